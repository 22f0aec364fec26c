"""An engine's worker that cannot build the oracle, with real processes: a controller, an
executor driver, and the engine's worker processes.

Two ways it happens: the worker is there when the driver starts (the driver builds the
oracle on it before READY, and refuses the campaign, saying why), or it comes later (a
node that joins, or a file that vanished): then each trial it is given fails, retryable,
saying which worker and why, and the campaign ends on its failure budget, not in a hang.
"""

from __future__ import annotations

import csv
import json
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from pathlib import Path

import pytest

from loopctl.drivers.executor import ExecutorDriver
from tests.conftest import TCP_ANY, Procs, count, db_rows, scaled, wait_for
from tests.specs import branin

pytestmark = pytest.mark.slow


def _table(path: Path) -> None:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["x1", "x2", "y"])
        for x1, x2 in ((-5, 0), (0, 5), (5, 10), (10, 15)):
            w.writerow([x1, x2, x1 + x2])


def _wait_for_gate(gate: str) -> None:
    """A worker's start, held until the test opens the gate: it joins after the driver's
    set-up, as a node that comes up late does (a test-side event, not a sleep)."""
    while not Path(gate).exists():
        time.sleep(0.05)


def test_a_worker_that_cannot_build_the_oracle_fails_each_trial_saying_why(
    tmp_path: Path, procs: Procs
) -> None:
    table = tmp_path / "measured.csv"
    _table(table)
    spec = branin(
        tmp_path,
        strategy={"method": "sobol"},
        budget={"trials": 4, "max_failed": 2},
        execution={"max_in_flight": 2, "retries": 1, "heartbeat_timeout": 4},
        oracle={"kind": "table", "table": str(table), "options": {"nearest": True}},
        drivers={"spawn": 0},
    )
    db = tmp_path / "w.db"
    ctl = procs.controller(spec, db, TCP_ANY)
    gate = tmp_path / "gate"
    pool = ProcessPoolExecutor(
        2, mp_context=get_context("spawn"), initializer=_wait_for_gate, initargs=(str(gate),)
    )
    driver = ExecutorDriver(
        procs.endpoint(ctl),
        pool,
        capacity=2,
        lost=(BrokenProcessPool,),
        name="pool",
        outbox=tmp_path / "outbox",
    )
    codes: list[int] = []
    thread = threading.Thread(target=lambda: codes.append(driver.run()), daemon=True)
    thread.start()
    # set-up is over (the oracle checked here, the workers' warm-up still held at the gate)
    # once the controller has dispatched a trial to the driver, which it does only after
    # READY (trials are proposed at HELLO already); then the file vanishes for the workers
    dispatched = "SELECT COUNT(*) FROM events WHERE kind = 'trial_dispatched'"
    procs.wait_for(lambda: count(db, dispatched) > 0, 60, "a dispatch", ctl)
    table.unlink()
    gate.touch()
    assert procs.exit_code(ctl, 60) == 0
    wait_for(lambda: not thread.is_alive(), scaled(30), "the driver to leave")
    assert codes == [0]
    assert count(db, "SELECT COUNT(*) FROM trials WHERE status = 'failed'") == 2
    assert count(db, "SELECT COUNT(*) FROM trials WHERE status = 'completed'") == 0
    reasons = db_rows(db, "SELECT payload FROM events WHERE kind = 'trial_failed'")
    assert len(reasons) >= 2
    for (payload,) in reasons:
        body = json.loads(payload)
        assert body["retryable"] is True, body
        assert "cannot build the oracle: oracle table" in body["reason"], body
        assert "measured.csv' not found" in body["reason"] and "worker " in body["reason"]
    # each of the two trials that failed for good was tried twice (retries: 1)
    assert db_rows(db, "SELECT attempts FROM trials WHERE status = 'failed'") == [(2,), (2,)]
    (why,) = db_rows(db, "SELECT payload FROM events WHERE kind = 'campaign_finished'")[0]
    assert "too many failures: 2 trials failed" in why


def _home(path: str) -> None:
    """A worker whose home is not the driver's: ``~/...`` names another file there."""
    import os

    os.environ["HOME"] = path


def test_a_worker_there_at_set_up_that_cannot_build_the_oracle_refuses_the_campaign(
    tmp_path: Path, procs: Procs, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "driver-home").mkdir()
    (tmp_path / "worker-home").mkdir()
    _table(tmp_path / "driver-home" / "measured.csv")
    monkeypatch.setenv("HOME", str(tmp_path / "driver-home"))  # the driver runs in this process
    spec = branin(
        tmp_path,
        strategy={"method": "sobol"},
        execution={"heartbeat_timeout": 60},  # the warm-up may take up to 30 s here
        oracle={"kind": "table", "table": "~/measured.csv", "options": {"nearest": True}},
        drivers={"spawn": 0},
    )
    db = tmp_path / "r.db"
    ctl = procs.controller(spec, db, TCP_ANY)
    pool = ProcessPoolExecutor(
        1,
        mp_context=get_context("spawn"),
        initializer=_home,
        initargs=(str(tmp_path / "worker-home"),),
    )
    driver = ExecutorDriver(procs.endpoint(ctl), pool, capacity=1, name="pool")
    assert driver.run() == 2  # EXIT_CANNOT_EVALUATE, at WELCOME: before any trial
    left = "SELECT COUNT(*) FROM events WHERE kind = 'driver_left'"
    procs.wait_for(lambda: count(db, left) == 1, 30, "the controller to hear BYE", ctl)
    assert count(db, "SELECT COUNT(*) FROM events WHERE kind = 'trial_dispatched'") == 0
    (payload,) = db_rows(db, "SELECT payload FROM events WHERE kind = 'driver_left'")[0]
    reason = json.loads(payload)["reason"]
    assert reason.startswith(
        "cannot evaluate: a worker cannot build the oracle: oracle table '~/measured.csv' not "
        "found (looked for " + str(tmp_path / "worker-home" / "measured.csv")
    ), reason
