"""The oracle on a ``concurrent.futures.Executor``: the seam to distributed engines.

One driver process talks to the controller and hands each trial to an engine (Parsl,
Dask, a process pool) as a future; the engine's workers run :func:`run_oracle`, which
builds the oracle from the campaign's WELCOME settings and evaluates one parameter set.
The driver declares the engine's worker count as its capacity, so the controller keeps
that many trials on it.

Each trial runs in the SDK's evaluation thread, as for every driver with ``capacity > 1``;
here that thread only waits on its future (no computing, a few kB of stack), so even
hundreds of trials in flight cost little. What the engine says about a future decides the
report: a lost worker is a retryable failure (the calculation itself never finished, so
another attempt may well succeed), an exception from the oracle is a failure that is not
retried, as with ``loopctl driver oracle``.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import random
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor, wait
from pathlib import Path
from typing import Any

from loopctl.drivers.base import (
    GIVE_UP_AFTER,
    CannotEvaluate,
    Driver,
    PutBack,
    Result,
    TrialFailed,
)
from loopctl.drivers.oracle import FAILURES, oracle_from_settings, parse_latency

log = logging.getLogger("loopctl.driver")

_ORACLES: dict[str, Any] = {}  # per worker process: built once per campaign, not per trial


def _oracle(settings: Mapping[str, Any], overrides: Mapping[str, Any]) -> Any:
    cache = json.dumps([settings, overrides], sort_keys=True, default=str)
    if cache not in _ORACLES:
        _ORACLES.clear()  # a new campaign: the last one's oracle is not needed again
        _ORACLES[cache] = oracle_from_settings(settings, overrides)
    return _ORACLES[cache]


def warm_up(settings: Mapping[str, Any], overrides: Mapping[str, Any]) -> str:
    """Build the oracle on a worker ahead of its first trial (EMT: imports and elemental
    references, seconds), so that no trial's time includes it."""
    _oracle(settings, overrides)
    return f"{platform.node()}:{os.getpid()}"


def run_oracle(
    settings: Mapping[str, Any], overrides: Mapping[str, Any], parameters: dict[str, Any], key: str
) -> dict[str, Any]:
    """Evaluate one parameter set on an engine's worker; a plain dict comes back.

    Top level and free of our own exceptions on purpose: engines pickle the function by
    reference and the return value by value, and a ``TrialFailed`` would lose its
    ``retryable`` on the way back (exceptions are re-created from their message alone).
    A failure is returned as ``{"failed": reason, "retryable": ...}``: a simulated one, the
    oracle's ``TrialFailed``, or an oracle this worker cannot build (retryable, naming the
    worker). ``key`` seeds the latency jitter and the simulated failures of this attempt."""
    worker = f"{platform.node()}:{os.getpid()}"
    try:
        fn, conf, seed = _oracle(settings, overrides)
    except CannotEvaluate as exc:
        # this worker lacks what the driver's machine has (a package, a file, a model):
        # another worker may well have it, so the campaign's retries decide
        return {"failed": f"worker {worker} cannot build the oracle: {exc}", "retryable": True}
    rng = random.Random(f"{seed}-{key}")
    started = time.monotonic()
    low, high = parse_latency(conf.get("latency"))
    if high > 0:
        time.sleep(rng.uniform(low, high))
    fail_rate = float(conf.get("fail_rate") or 0.0)
    if fail_rate and rng.random() < fail_rate:
        reason, retryable = rng.choice(FAILURES)
        return {"failed": f"simulated failure: {reason}", "retryable": retryable}
    try:
        out = fn(parameters)
    except TrialFailed as exc:  # the oracle's own verdict, with its retryable intact
        return {"failed": exc.reason, "retryable": exc.retryable}
    metadata = dict(getattr(out, "metadata", None) or {})
    metadata["worker"] = worker
    metadata["seconds"] = round(time.monotonic() - started, 3)
    return {"outcomes": dict(out), "metadata": metadata}


class ExecutorDriver(Driver):
    """The oracle driver, with every evaluation run as a future on ``executor``.

    ``lost``: the engine's exceptions for a worker that died under a task (reported as
    retryable failures); ``broken``: those for an engine that can run nothing any more
    (the trial is put back unmeasured and the driver leaves, rather than failing every
    trial it is given in turn); ``workers``: how many workers the engine has now, when it
    can tell: the driver connects to the controller only once there is one (a SLURM job
    may wait in the queue for hours, and trials leased meanwhile would only wait with it,
    their ``trial_timeout`` running). The driver shuts the executor down when it exits."""

    kind = "executor"
    version = "1"

    def __init__(
        self,
        connect: str,
        executor: Executor,
        *,
        capacity: int,
        lost: tuple[type[BaseException], ...] = (),
        broken: tuple[type[BaseException], ...] = (),
        workers: Callable[[], int] | None = None,
        overrides: Mapping[str, Any] | None = None,
        name: str | None = None,
        outbox: str | Path | None = None,
        curve: tuple[str, str] | None = None,
        fidelities: Sequence[str] | None = None,
        give_up_after: float | None = GIVE_UP_AFTER,
    ) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        super().__init__(
            connect,
            name=name,
            capacity=capacity,
            outbox=outbox,
            curve=curve,
            fidelities=fidelities,
            give_up_after=give_up_after,
        )
        self.executor = executor
        self.lost, self.broken = lost, broken
        self._workers = workers
        self.overrides = dict(overrides or {})
        self._tries: Counter[str] = Counter()

    def setup(self, settings: Mapping[str, Any]) -> None:
        """Build the oracle here once: a campaign it cannot serve is refused at WELCOME
        (exit 2), before any trial reaches a worker. Then build it on the workers, one task
        per slot, as the oracle driver does before it says READY; a worker that cannot
        (a package missing on the nodes) refuses the campaign the same way. Waited for up
        to half the heartbeat timeout: slower workers build on their first trial."""
        oracle_from_settings(settings, self.overrides, warm=False)
        futures = [
            self.executor.submit(warm_up, dict(settings), self.overrides)
            for _ in range(self.capacity)
        ]
        done, _ = wait(futures, timeout=self.heartbeat_timeout / 2)
        for f in done:
            exc = f.exception()
            if exc is not None and not isinstance(exc, self.lost):
                why = (
                    str(exc) if isinstance(exc, CannotEvaluate) else f"{type(exc).__name__}: {exc}"
                )
                raise CannotEvaluate(f"a worker cannot build the oracle: {why}")
        log.info("oracle built on %d workers", len({f.result() for f in done if not f.exception()}))

    def evaluate(self, parameters: dict[str, Any]) -> dict[str, Any] | Result:
        trial = self.current_trial()
        self._tries[trial] += 1
        key = f"{self.campaign_id}-{trial}-{self._tries[trial]}"
        future = self.executor.submit(run_oracle, self.settings, self.overrides, parameters, key)
        try:
            got = future.result()
        except self.lost as exc:
            raise TrialFailed(f"{type(exc).__name__}: {exc}", retryable=True) from None
        except self.broken as exc:
            reason = f"the engine failed ({type(exc).__name__}: {exc})"
            log.error("%s; leaving", reason)
            self.stop(reason)
            raise PutBack(reason) from None
        if "failed" in got:
            raise TrialFailed(got["failed"], retryable=bool(got["retryable"]))
        return Result(got["outcomes"], got["metadata"])

    def run(self) -> int:
        try:
            self._wait_for_workers()
            return super().run()
        finally:
            self.executor.shutdown(wait=False)

    def _wait_for_workers(self) -> None:
        if self._workers is None:
            return
        waited = said = time.monotonic()
        log.info("waiting for the engine's first worker before contacting the controller")
        while self._workers() < 1:
            if time.monotonic() - said > 60:
                log.warning(
                    "waiting for the engine's first worker (%.0f s so far); the controller "
                    "is not contacted until then",
                    time.monotonic() - waited,
                )
                said = time.monotonic()
            time.sleep(0.5)
        log.info("the engine has workers after %.1f s", time.monotonic() - waited)
