"""Running a campaign's controller until its budget is used: what `loopctl start`, `resume`
and `demo` do, callable from Python too (a notebook, a script) with typed options instead of
command-line flags. The controller and the models are imported when a run starts, so that
importing this module stays cheap."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from loopctl.errors import LoopctlError

if TYPE_CHECKING:
    from loopctl.controller import Controller
    from loopctl.security import Curve
    from loopctl.spec import Spec
    from loopctl.store import Store

DEFAULT_BIND = "tcp://127.0.0.1:*"  # a free port on loopback, printed
SYNC_MODES = ("FULL", "NORMAL")


@dataclass(frozen=True)
class Security:
    """CURVE set-up given by the caller; each key file left out comes from the campaign
    file's `security:` section. ``insecure`` allows binding beyond loopback without CURVE."""

    curve_secret_key: str | Path | None = None
    authorized_keys: str | Path | None = None
    insecure: bool = False


@dataclass(frozen=True)
class RunResult:
    """How a run ended; the database holds everything else."""

    reason: str  # why the controller stopped, e.g. "budget: 30 trials completed", "error: ..."
    db: Path
    completed: int
    failed: int
    abandoned: int
    wall: float  # seconds the controller ran

    @property
    def ok(self) -> bool:
        return not self.reason.startswith("error")


def _print(text: str) -> None:
    print(text, flush=True)


Echo = Callable[[str], None]


def start(
    spec: Spec | str | Path,
    db: str | Path,
    *,
    bind: str = DEFAULT_BIND,
    trials: int | None = None,
    spawn_drivers: int | None = None,
    sync: str = "FULL",
    security: Security = Security(),  # frozen: one shared default is safe
    past: str | Path | None = None,
    echo: Echo = _print,
) -> RunResult:
    """Create the campaign database ``db`` (with the measurements of the CSV ``past``
    first, if given) and run the controller until the budget is used or it is stopped.

    ``spawn_drivers``: local oracle drivers to start (None: the file's `drivers.spawn`;
    0: wait for drivers to connect to the endpoint it prints). ``echo`` receives the lines
    a person watching should see (the endpoint, how to connect drivers, the summary)."""
    from loopctl.controller import check_bindable
    from loopctl.spec import load_spec
    from loopctl.store import Store
    from loopctl.versions import software_versions

    if isinstance(spec, str | Path):
        spec = load_spec(spec)
    db = str(db)
    _check_sync(sync)
    curve = check_options(spec, trials=trials, spawn=spawn_drivers, bind=bind, security=security)
    check_bindable(bind)  # before the database exists, so a busy port leaves nothing behind
    store = Store.create(
        db, spec.raw, spec.hash, software_versions(), synchronous=sync, source=spec.source_file
    )
    if past is not None:
        from loopctl.tables import import_csv

        try:
            ids = import_csv(store, spec, str(past))
        except BaseException:  # a bad file leaves no half-made campaign behind
            store.close()
            for suffix in ("", "-wal", "-shm", "-lock"):
                Path(db + suffix).unlink(missing_ok=True)
            raise
        echo(f"imported {len(ids)} trials ({ids[0]}..{ids[-1]}) from {past}")
    return run_store(
        store, spec, db, bind=bind, trials=trials, spawn=spawn_drivers, curve=curve, echo=echo
    )


def resume(
    db: str | Path,
    *,
    bind: str | None = None,
    trials: int | None = None,
    spawn_drivers: int | None = None,
    sync: str | None = None,
    security: Security = Security(),  # frozen: one shared default is safe
    echo: Echo = _print,
) -> RunResult:
    """Carry on a stopped or crashed campaign from its database alone. Left out, ``bind``,
    ``trials`` and ``sync`` are what the campaign last ran with (the endpoint its drivers
    still call, the budget it was given, its durability)."""
    from loopctl.controller import check_bindable
    from loopctl.integrity import stored_spec
    from loopctl.store import Store

    db = str(db)
    if sync is not None:
        _check_sync(sync)
    store = Store.open(db, synchronous=sync or "FULL")
    try:
        spec = stored_spec(store)
        earlier = store.run_settings()  # what the campaign last ran with
        store.set_synchronous(sync or earlier.get("synchronous") or "FULL")
        endpoint = bind or earlier.get("endpoint") or DEFAULT_BIND
        curve = check_options(
            spec, trials=trials, spawn=spawn_drivers, bind=endpoint, security=security
        )
        if not bind and earlier.get("endpoint"):
            try:
                check_bindable(endpoint)
            except LoopctlError as exc:
                raise LoopctlError(
                    f"{exc}; it is the endpoint this campaign last ran at (drivers left running "
                    "keep calling it): free it, or choose another with --bind"
                ) from None
    except BaseException:
        store.close()
        raise
    return run_store(
        store,
        spec,
        db,
        bind=endpoint,
        trials=trials or earlier.get("trials"),
        spawn=spawn_drivers,
        curve=curve,
        echo=echo,
    )


def _check_sync(sync: str) -> None:
    if sync not in SYNC_MODES:
        raise LoopctlError(f"sync {sync!r}: expected one of {', '.join(SYNC_MODES)}")


def check_options(
    spec: Spec,
    *,
    trials: int | None,
    spawn: int | None,
    bind: str,
    security: Security,
) -> Curve | None:
    """Refuse what cannot work before anything is created; returns the CURVE set-up."""
    from loopctl.security import Curve, is_loopback

    if trials is not None and trials < 1:
        raise LoopctlError("--trials must be at least 1")
    n_spawn = spec.drivers.spawn if spawn is None else spawn
    if n_spawn and spec.oracle is None:
        raise LoopctlError(
            "--spawn-drivers starts oracle drivers, but the campaign file has no `oracle` section"
        )
    base = spec.base_dir or Path(".")
    secret = security.curve_secret_key or (
        str(base / spec.security.curve_secret_key) if spec.security.curve_secret_key else None
    )
    allowed = security.authorized_keys or (
        str(base / spec.security.authorized_keys) if spec.security.authorized_keys else None
    )
    if (secret is None) != (allowed is None):
        raise LoopctlError("CURVE needs both a secret key and a folder of authorised keys")
    curve = Curve(Path(secret), Path(allowed)) if secret and allowed else None
    if curve is not None:
        curve.allowed()  # fail now on a missing folder or a bad key file
        if n_spawn:
            raise LoopctlError(
                "spawned drivers do not use CURVE keys; start them by hand "
                "with --key and --server-key"
            )
    elif not is_loopback(bind) and not security.insecure:
        raise LoopctlError(
            f"{bind} is reachable from other machines, and without CURVE anyone who can reach "
            "it can register as a driver and submit results. Set security.curve_secret_key and "
            "security.authorized_keys (or --curve-secret-key/--authorized-keys; keys come from "
            "`loopctl keys generate`), or pass --insecure on a network you trust"
        )
    return curve


def run_store(
    store: Store,
    spec: Spec,
    db: str,
    *,
    bind: str,
    trials: int | None,
    spawn: int | None,
    curve: Curve | None = None,
    echo: Echo = _print,
) -> RunResult:
    """Bind, start local drivers if asked, run until done, report the summary. Takes the
    store over: it is closed on return."""
    from loopctl import ledger
    from loopctl.controller import Controller, driver_settings, run_controller
    from loopctl.progress import TerminalReporter
    from loopctl.spawn import spawn_drivers, stop_drivers
    from loopctl.strategies import make_strategy

    n_spawn = spec.drivers.spawn if spawn is None else spawn
    ctl = Controller(
        store, spec, make_strategy(spec), trials=trials, settings=driver_settings(spec)
    )
    procs = []
    try:
        endpoint = ctl.bind(bind, curve)
        echo(f"campaign {spec.name!r}: database {db}")
        echo(f"controller listening on {endpoint}")
        if n_spawn:
            procs = spawn_drivers(endpoint, n_spawn, db)
        else:
            echo(driver_hint(spec, endpoint, curve))
        ctl.reporter = reporter = TerminalReporter(spec.name, db=db)
        t0 = time.monotonic()
        try:
            reason = _outside_any_loop(run_controller, ctl)
        finally:
            reporter.close()
        wall = time.monotonic() - t0
        echo(summary_text(store, spec, db, reason, wall))
        counts = ledger.run_counts(store)
    finally:
        # finished: drivers were told to exit; stopped early: they are ended now and keep
        # any unacknowledged result in their outbox for `loopctl resume --spawn-drivers`
        stop_drivers(procs, timeout=5.0 if ctl.finished else 0.0)
        store.close()
    return RunResult(
        reason=reason,
        db=Path(db).resolve(),
        completed=counts.get("completed", 0),
        failed=counts.get("failed", 0),
        abandoned=counts.get("abandoned", 0),
        wall=wall,
    )


def _outside_any_loop(run: Callable[[Controller], str], ctl: Controller) -> str:
    """A notebook's kernel runs its cells inside a running event loop, where the
    controller's own loop could not start: that loop is set aside for the run (the call
    blocks, as it does from a terminal) and put back afterwards."""
    outer = asyncio._get_running_loop()
    asyncio._set_running_loop(None)
    try:
        return run(ctl)
    finally:
        asyncio._set_running_loop(outer)


def driver_hint(spec: Spec, endpoint: str, curve: Curve | None = None) -> str:
    """How to connect the kind of driver this campaign is written for: its `robot:` section
    means the robot driver, its `oracle:` section the simulated one; with neither, the
    results come from a person or a driver of the lab's own, and suggesting the simulated
    oracle (which would fill the database with made-up numbers) would mislead."""
    keys = " --key NAME.key_secret --server-key CONTROLLER.key" if curve is not None else ""
    if spec.robot:
        cmds = [f"loopctl driver robot --connect {endpoint} --name robot-1{keys}"]
    elif spec.oracle is not None:
        cmds = [f"loopctl driver oracle --connect {endpoint}{keys}"]
    else:
        cmds = [
            f"loopctl driver human --connect {endpoint} --operator NAME{keys}",
            "or a driver of your own (docs/drivers.md)",
        ]
    return "waiting for drivers: " + "\n  ".join(cmds)


def summary_text(store: Store, spec: Spec, db: str, reason: str, wall: float) -> str:
    from loopctl import ledger
    from loopctl.progress import describe_simulated, format_parameters

    counts = ledger.run_counts(store)
    best = ledger.best(store, spec)
    lines = [
        f"finished: {reason}",
        f"trials: {counts.get('completed', 0)} completed, {counts.get('failed', 0)} failed, "
        f"{counts.get('abandoned', 0)} abandoned in {wall:.1f} s",
    ]
    if len(spec.objectives) > 1:
        from loopctl.status import format_pareto

        lines.extend(format_pareto(ledger.pareto(store, spec), show=10))
    elif best is not None:
        unit = spec.objectives[0].unit
        lines.append(
            f"best: {best['objective']} = {best['value']:.6g}"
            f"{' ' + unit if unit else ''} (trial {best['trial_id']})"
        )
        lines.append(f"      {format_parameters(best['parameters'])}")
        simulated = describe_simulated(best)
        if simulated:
            lines.append(f"      {simulated}")
    lines.append(f"database: {Path(db).resolve()}")
    return "\n".join(lines)
