"""No trial stays `running` on a live driver that does not have it.

How a trial used to be stranded: its TASK went to a socket the driver had just replaced
(a reconnect with the same session kept the trial and the old "ready"), a HELLO under a
new name on the same socket dropped the old name's trials from view, and a HELLO queued
on a replaced socket took the driver away from its live one. Then, as a last resort, a
trial a driver holds without answering times out (execution.trial_timeout, auto by
default).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from loopctl import ledger, lifecycle
from loopctl.controller import Controller, PendingReplies
from loopctl.spec import AUTO_TIMEOUT_FIRST, AUTO_TIMEOUT_FLOOR, load_spec, parse_spec
from loopctl.store import Store
from loopctl.strategies import make_strategy
from tests.conftest import Procs, count, db_rows
from tests.specs import branin
from tests.test_bad_messages import RawDriver

pytestmark = pytest.mark.slow

QUIET = {"max_in_flight": 1, "heartbeat_interval": 0.5, "heartbeat_timeout": 60}


def start(tmp: Path, procs: Procs, ipc: str, **execution: Any) -> Path:
    spec = branin(tmp, strategy={"method": "sobol"}, execution={**QUIET, **execution})
    db = tmp / "r.db"
    procs.serving(procs.controller(spec, db, ipc), db)
    return db


def hello(d: RawDriver, name: str, **extra: Any) -> None:
    d.send("HELLO", name=name, kind="test", version="1", capacity=1, **extra)
    d.recv_type("WELCOME")


def test_hello_under_a_new_name_on_the_same_socket_frees_the_old_names_trial(
    tmp_path: Path, procs: Procs, ipc: str
) -> None:
    db = start(tmp_path, procs, ipc)
    d = RawDriver(ipc)
    try:
        hello(d, "x")
        d.send("READY")
        first = d.recv_type("TASK")
        hello(d, "y")  # the same socket, another name: x's trial will never be reported
        d.send("READY")
        again = d.recv_type("TASK")  # max_in_flight 1: only if x's trial was freed
    finally:
        d.close()
    assert again["trial"] == first["trial"] and again["attempt"] == 2
    assert db_rows(db, "SELECT driver, status FROM trials WHERE id = ?", first["trial"]) == [
        ("y", "running")
    ]


def test_a_task_lost_with_a_replaced_socket_is_sent_again(
    tmp_path: Path, procs: Procs, ipc: str
) -> None:
    db = start(tmp_path, procs, ipc)
    old = RawDriver(ipc)
    hello(old, "z", session="s1")
    old.send("READY")
    lost = old.recv_type("TASK")
    old.close()  # the driver thought us gone; the TASK died with this socket
    new = RawDriver(ipc)
    try:
        hello(new, "z", session="s1", holds=[])  # same process, fresh socket, holds nothing
        new.send("READY")
        again = new.recv_type("TASK")
    finally:
        new.close()
    assert again["trial"] == lost["trial"] and again["attempt"] == 2
    (reason,) = db_rows(
        db, "SELECT reason FROM trials WHERE id = ? AND status = 'running'", lost["trial"]
    )[0] or (None,)
    assert reason is None  # running again, on the live socket


def test_a_stale_hello_does_not_take_the_driver_off_its_live_socket(
    tmp_path: Path, procs: Procs, ipc: str
) -> None:
    start(tmp_path, procs, ipc)
    stale, live = RawDriver(ipc), RawDriver(ipc)
    try:
        hello(stale, "w", session="s1", connection=1)
        hello(live, "w", session="s1", connection=2)
        live.send("READY")
        task = live.recv_type("TASK")
        stale.send("HELLO", name="w", kind="test", version="1", capacity=1, session="s1",
                   connection=1)  # fmt: skip
        assert stale.recv_type("ERROR")["code"] == "stale_connection"
        live.send("HEARTBEAT")
        assert live.recv()["type"] == "HEARTBEAT"  # still known on the live socket
        live.send("RESULT", trial=task["trial"], outcomes={"y": 1.0})
        assert live.recv_type("ACK")["trial"] == task["trial"]
    finally:
        stale.close()
        live.close()


def test_many_drivers_starting_together_leave_no_trial_running(
    tmp_path: Path, procs: Procs, ipc: str
) -> None:
    """32 SDK drivers knock before the controller is up (they time out and reconnect,
    so several sockets of one session queue HELLOs), then a fast campaign runs."""
    spec = branin(
        tmp_path,
        strategy={"method": "sobol"},
        budget={"trials": 400},
        execution={"max_in_flight": 32, "heartbeat_interval": 0.5, "heartbeat_timeout": 4},
    )
    db = tmp_path / "m.db"
    drivers = procs.start(
        ipc, "32", str(tmp_path / "outboxes"), module="tests.many_drivers", log="drivers.log"
    )

    def every_driver_gave_up_once() -> bool:  # and opened a new socket
        lines = procs.log("drivers.log").splitlines()
        return len({ln.split()[2] for ln in lines if "reconnecting" in ln}) == 32

    procs.wait_for(every_driver_gave_up_once, 30, "32 drivers to reconnect", drivers)
    ctl = procs.controller(spec, db, ipc)
    assert procs.exit_code(ctl, 180) == 0, procs.log("controller.log")[-3000:]
    assert procs.exit_code(drivers, 30) == 0, procs.log("drivers.log")[-3000:]
    assert count(db, "SELECT COUNT(*) FROM trials WHERE status = 'completed'") == 400
    assert count(db, "SELECT COUNT(*) FROM trials WHERE status != 'completed'") == 0
    assert count(db, "SELECT COUNT(DISTINCT driver) FROM trials") > 1


def test_trial_timeout_is_auto_by_default() -> None:
    base = {
        "name": "t",
        "space": [{"name": "x", "type": "range", "bounds": [0, 1]}],
        "objectives": [{"name": "y", "goal": "minimize"}],
        "budget": {"trials": 3},
    }
    assert parse_spec(base).execution.timeout_auto
    fixed = parse_spec({**base, "execution": {"trial_timeout": 60}}).execution
    assert (fixed.trial_timeout, fixed.timeout_auto) == (60, False)
    off = parse_spec({**base, "execution": {"trial_timeout": "none"}}).execution
    assert (off.trial_timeout, off.timeout_auto) == (None, False)


def test_auto_timeout_redispatches_a_trial_held_without_an_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The default timeout follows the campaign's own trials and applies to trials sent
    out before the first result too (they were given a day)."""
    spec = load_spec(branin(tmp_path, strategy={"method": "sobol"}))
    store = Store.create(tmp_path / "a.db", spec.raw, spec.hash, {})
    ctl = Controller(store, spec, make_strategy(spec))
    assert ctl.trial_timeout() == AUTO_TIMEOUT_FIRST
    with store.batch() as b:
        ids = ledger.record_proposal(
            b, make_strategy(spec).propose(ctl.view.refresh(), 2), ctl.view.refresh().as_of
        )
        ledger.record_dispatch(b, ids[0], "idle", time.time() + AUTO_TIMEOUT_FIRST)
        ledger.record_dispatch(b, ids[1], "busy", time.time() + AUTO_TIMEOUT_FIRST)
    ctl._longest = 2.0  # the first results took 2 s: 5 minutes is plenty now
    assert ctl.trial_timeout() == AUTO_TIMEOUT_FLOOR
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + AUTO_TIMEOUT_FLOOR + 1)
    for name in ("idle", "busy"):  # both drivers connected and alive, never answering
        ctl.drivers[name.encode()] = _conn(name)
    ctl._resync()
    with store.batch() as b:
        assert ctl._expire(b, PendingReplies())
    statuses = {t["id"]: t["status"] for t in store.trials()}
    assert statuses == {ids[0]: lifecycle.PROPOSED, ids[1]: lifecycle.PROPOSED}
    reasons = {r for (r,) in store.conn.execute("SELECT reason FROM trials")}
    assert reasons == {"trial timed out"}
    store.close()


def _conn(name: str) -> Any:
    from loopctl.controller import DriverConn

    return DriverConn(name.encode(), name, "test", 1, time.monotonic())
