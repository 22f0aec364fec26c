"""The simulated DFT oracle driver: EMT alloy energies, benchmark functions or a table.

What to compute comes from the campaign (WELCOME settings); command-line flags
override it. The physics lives in :mod:`loopctl.drivers.oracle_models`.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from loopctl.drivers.base import GIVE_UP_AFTER, CannotEvaluate, Driver, Result, TrialFailed
from loopctl.drivers.oracle_models import OracleConfigError, build_oracle

# what a flaky calculation reports; the first kind is worth retrying, the second is not
FAILURES = (("compute node lost during the calculation", True), ("SCF did not converge", False))


class OracleDriver(Driver):
    kind = "oracle"
    version = "1"

    def __init__(
        self,
        connect: str,
        *,
        overrides: Mapping[str, Any] | None = None,
        name: str | None = None,
        capacity: int = 1,
        outbox: str | Path | None = None,
        curve: tuple[str, str] | None = None,
        fidelities: Sequence[str] | None = None,
        give_up_after: float | None = GIVE_UP_AFTER,
    ) -> None:
        super().__init__(
            connect,
            name=name,
            capacity=capacity,
            outbox=outbox,
            curve=curve,
            fidelities=fidelities,
            give_up_after=give_up_after,
        )
        self.overrides = dict(overrides or {})
        self._fn: Callable[[dict[str, Any]], dict[str, float]] | None = None
        self.latency = (0.0, 0.0)
        self.fail_rate = 0.0
        self._rng = random.Random(0)
        self._jitter = random.Random(0)

    def setup(self, settings: Mapping[str, Any]) -> None:
        self._fn, conf, seed = oracle_from_settings(settings, self.overrides)
        self.latency = parse_latency(conf.get("latency"))
        self.fail_rate = float(conf.get("fail_rate") or 0.0)
        self._rng = random.Random(f"{seed}-{self.name}")
        self._jitter = random.Random(f"{seed}-{self.name}-latency")  # failures stay as they were

    def evaluate(self, parameters: dict[str, Any]) -> dict[str, Any] | Result:
        assert self._fn is not None
        low, high = self.latency
        if high > 0:
            time.sleep(self._jitter.uniform(low, high))
        if self.fail_rate and self._rng.random() < self.fail_rate:
            reason, retryable = self._rng.choice(FAILURES)
            raise TrialFailed(f"simulated failure: {reason}", retryable=retryable)
        out = self._fn(parameters)
        metadata = getattr(out, "metadata", None)  # e.g. the composition EMT's cell could hold
        return Result(dict(out), metadata) if metadata else out


def oracle_from_settings(
    settings: Mapping[str, Any], overrides: Mapping[str, Any], *, warm: bool = True
) -> tuple[Callable[[dict[str, Any]], dict[str, float]], dict[str, Any], int]:
    """(oracle, its configuration, seed) from the campaign's WELCOME settings and the
    command line's overrides; shared by this driver and the workers of an executor driver
    (drivers/executor.py), so that both compute the same thing from the same campaign.
    ``warm=False``: only check (an executor driver evaluates nothing itself, so it need
    not load CHGNet's model and references in the background)."""
    conf = dict(settings.get("oracle") or {})
    conf.update(overrides)
    kind = conf.get("kind")
    if not kind:
        raise CannotEvaluate("the campaign has no `oracle` section and no --oracle was given")
    seed = int(conf.get("seed", settings.get("seed", 0)))
    try:
        fn = build_oracle(
            kind,
            objectives=list(settings.get("objectives", [])),
            parameters=list(settings.get("parameters", [])),
            function=conf.get("function"),
            table=conf.get("table"),
            noise=float(conf.get("noise") or 0.0),
            seed=seed,
            options=dict(conf.get("options") or {}),
            warm=warm,
        )
    except OracleConfigError as exc:
        raise CannotEvaluate(str(exc)) from None
    return fn, conf, seed


def parse_latency(value: Any) -> tuple[float, float]:
    """Seconds per evaluation: a number, or ``LOW..HIGH`` for a uniform jitter between them
    (simulated instruments are rarely punctual)."""
    if value is None or value == "":
        return (0.0, 0.0)
    text = str(value)
    low_text, sep, high_text = text.partition("..")
    try:
        low = float(low_text)
        high = float(high_text) if sep else low
    except ValueError:
        raise ValueError(f"latency {text!r}: give seconds, or LOW..HIGH such as 0.1..0.3") from None
    if not 0 <= low <= high or high == float("inf"):
        raise ValueError(f"latency {text!r}: need 0 <= LOW <= HIGH, both finite")
    return (low, high)
