"""Pull the plug on the controller, again and again: nothing is lost or recorded twice."""

from __future__ import annotations

import json
import random
import signal
import sqlite3
import time
from functools import partial
from pathlib import Path

import pytest

from tests.conftest import TCP_ANY, Procs, count, loopctl, scaled, wait_for
from tests.specs import branin, branin_fn

pytestmark = pytest.mark.slow

TRIALS = 60
STARTED = "SELECT COUNT(*) FROM events WHERE kind = 'controller_started'"


def _started(db: Path, n: int) -> bool:
    return count(db, STARTED) == n


def test_controller_killed_five_times_loses_nothing(tmp_path: Path, procs: Procs, ipc: str) -> None:
    spec = branin(
        tmp_path,
        strategy={"method": "sobol"},
        budget={"trials": TRIALS},
        execution={
            "max_in_flight": 3,
            "heartbeat_interval": 0.2,
            "heartbeat_timeout": 1.5,
            "retries": 10,
        },
    )
    db = tmp_path / "crash.db"  # ipc: every resumed controller is at the same address
    rng = random.Random(7)
    drivers = [procs.driver(ipc, f"d{i}", "--latency", "0.3") for i in range(3)]
    ctl = procs.controller(spec, db, ipc, log="ctl-0.log")
    kills = 0
    while kills < 5:
        procs.wait_for(partial(_started, db, kills + 1), 30, "the controller to start", ctl)
        time.sleep(rng.uniform(0.4, 1.2))  # a random moment of a running campaign
        done = count(db, "SELECT COUNT(*) FROM trials WHERE status = 'completed'")
        assert done < TRIALS, "the campaign finished before five kills; slow the drivers"
        ctl.send_signal(signal.SIGKILL)
        procs.exit_code(ctl, 10)
        kills += 1
        ctl = procs.start("-v", "resume", str(db), "--bind", ipc, log=f"ctl-{kills}.log")
    assert procs.exit_code(ctl, 120) == 0, procs.log(f"ctl-{kills}.log")
    for d in drivers:
        assert procs.exit_code(d, 20) == 0

    assert count(db, "SELECT COUNT(*) FROM trials WHERE status = 'completed'") == TRIALS
    assert count(db, "SELECT COUNT(*) FROM trials WHERE status != 'completed'") == 0
    assert count(db, STARTED) == 6
    # no result recorded twice
    assert count(db, "SELECT COUNT(*) FROM events WHERE kind = 'trial_completed'") == TRIALS
    # no result lost: everything a driver reported is in the database, with its value
    conn = sqlite3.connect(db)
    recorded = dict(conn.execute("SELECT trial_id, value FROM observations WHERE metric='y'"))
    params = {t: json.loads(p) for t, p in conn.execute("SELECT id, parameters FROM trials")}
    conn.close()
    reported = 0
    for i in range(3):
        for line in procs.log(f"d{i}.log").splitlines():
            if "report RESULT " in line:
                body = json.loads(line.split("report RESULT ", 1)[1])
                assert recorded[body["trial"]] == pytest.approx(body["outcomes"]["y"])
                reported += 1
        assert not list((tmp_path / f"d{i}.outbox").rglob("*.json"))  # all acknowledged
    assert reported >= TRIALS
    for tid, value in recorded.items():
        assert value == pytest.approx(branin_fn(params[tid]["x1"], params[tid]["x2"]))
    assert "DIFFERENT" not in loopctl("audit", str(db), "--replay").stdout


def test_driver_killed_holding_a_result_delivers_it_after_restart(
    tmp_path: Path, procs: Procs, ipc: str
) -> None:
    spec = branin(
        tmp_path,
        strategy={"method": "sobol"},
        budget={"trials": 3},
        execution={
            "max_in_flight": 1,
            "heartbeat_interval": 0.2,
            # also the resumed controller's grace period for the driver to come back with
            # its trial: scaled, for a driver process that starts slowly on a busy machine
            "heartbeat_timeout": scaled(1.0),
            "retries": 0,
        },
    )
    db = tmp_path / "held.db"  # ipc: the resumed controller is at the same address
    ctl = procs.controller(spec, db, ipc)
    drv = procs.driver(ipc, "keeper", "--latency", "1.5")
    wait_for(
        lambda: count(db, "SELECT COUNT(*) FROM trials WHERE status = 'running'") == 1,
        20,
        "a trial to be running",
    )
    ctl.send_signal(signal.SIGKILL)  # nobody will acknowledge the result
    procs.exit_code(ctl, 10)
    outbox = tmp_path / "keeper.outbox"
    wait_for(lambda: bool(list(outbox.rglob("*.json"))), 10, "the result in the outbox")
    (held,) = [f.stem for f in outbox.rglob("*.json")]
    drv.send_signal(signal.SIGKILL)  # and the driver dies holding it
    procs.exit_code(drv, 10)
    # same name, same outbox; started first, to be back within the grace period
    procs.driver(ipc, "keeper", "--latency", "0.1")
    ctl = procs.start("-v", "resume", str(db), "--bind", ipc, log="resume.log")
    assert procs.exit_code(ctl, 60) == 0, procs.log("resume.log")
    conn = sqlite3.connect(db)
    kinds = [
        k
        for (k,) in conn.execute("SELECT kind FROM events WHERE trial_id = ? ORDER BY seq", (held,))
    ]
    attempts = conn.execute("SELECT attempts FROM trials WHERE id = ?", (held,)).fetchone()[0]
    conn.close()
    # delivered from the outbox, not evaluated again: one dispatch, then the result
    assert kinds == [
        "trial_proposed",
        "trial_dispatched",
        "trial_in_doubt",
        "trial_reclaimed",
        "trial_completed",
    ]
    assert attempts == 1
    assert not list(outbox.rglob("*.json"))


def test_controller_survives_a_database_locked_by_another_program(
    tmp_path: Path, procs: Procs
) -> None:
    spec = branin(
        tmp_path,
        strategy={"method": "sobol"},
        budget={"trials": 12},
        execution={"heartbeat_interval": 0.5, "heartbeat_timeout": 3},
    )
    db = tmp_path / "locked.db"
    ctl = procs.controller(spec, db, TCP_ANY)
    procs.driver(procs.endpoint(ctl), "d", "--latency", "0.1")
    wait_for(
        lambda: count(db, "SELECT COUNT(*) FROM trials WHERE status='completed'") >= 2,
        20,
        "two results",
    )
    other = sqlite3.connect(db, timeout=scaled(5))
    other.execute("BEGIN IMMEDIATE")  # a person's sqlite3 shell, mid-edit
    try:  # until a result has come in, could not be recorded, and its driver was told so
        wait_for(
            lambda: "(not_recorded)" in procs.log("d.log"), 30, "a result refused while locked"
        )
    finally:
        other.rollback()
        other.close()
    assert procs.exit_code(ctl, 60) == 0, procs.log("controller.log")
    log = procs.log("controller.log")
    assert "another program holds a write lock" in log
    assert count(db, "SELECT COUNT(*) FROM trials WHERE status='completed'") == 12
    assert count(db, "SELECT COUNT(*) FROM events WHERE kind='trial_completed'") == 12
    assert loopctl("audit", str(db)).returncode == 0
