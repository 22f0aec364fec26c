"""A driver reports only its own trials; under CURVE, a name belongs to one key."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Procs, count, db_rows, loopctl, scaled
from tests.specs import branin
from tests.test_bad_messages import RawDriver, fingerprint

pytestmark = pytest.mark.slow


def hello(d: RawDriver, name: str, capacity: int, **extra: Any) -> dict[str, Any]:
    d.send("HELLO", name=name, kind="test", version="1", capacity=capacity, **extra)
    return d.recv_type("WELCOME")


def keep_alive_until(cond: Callable[[], bool], timeout: float, *alive: RawDriver) -> None:
    """Wait for ``cond`` while the given drivers heartbeat (and drain what they receive)."""
    end = time.monotonic() + scaled(timeout)
    while time.monotonic() < end:
        if cond():
            return
        for d in alive:
            d.send("HEARTBEAT")
            while d.sock.poll(0):
                d.sock.recv()
        time.sleep(0.1)
    raise AssertionError(f"timed out after {scaled(timeout)} s")


def test_results_only_from_the_driver_that_holds_the_trial(
    tmp_path: Path, procs: Procs, ipc: str
) -> None:
    spec = branin(
        tmp_path,
        strategy={"method": "sobol"},
        execution={
            "max_in_flight": 3,
            "heartbeat_interval": 0.2,
            # evil and good must not be lost while this test process is busy: only good's
            # real silence, below, is waited for (on its driver_lost event)
            "heartbeat_timeout": scaled(1.5),
            "retries": 2,
        },
    )
    db = tmp_path / "o.db"
    procs.serving(procs.controller(spec, db, ipc), db)
    good, evil = RawDriver(ipc), RawDriver(ipc)
    try:
        w = hello(good, "good", 2, session="s-good")
        good.send("READY")
        t1, t2 = good.recv_type("TASK")["trial"], good.recv_type("TASK")["trial"]
        hello(evil, "evil", 1, session="s-evil")
        evil.send("READY")
        t3 = evil.recv_type("TASK")["trial"]
        before = fingerprint(db)
        for t in (t1, t2):  # the reported attack: y = -1000 for another driver's trials
            evil.send("RESULT", trial=t, outcomes={"y": -1000.0})
            err = evil.recv_type("ERROR")
            assert err["code"] == "not_holder" and err["trial"] == t, err
        evil.send("FAILED", trial=t1, reason="sabotage", retryable=False)
        assert evil.recv_type("ERROR")["code"] == "not_holder"
        assert fingerprint(db) == before

        good.send("RESULT", trial=t1, outcomes={"y": 1.5})
        assert good.recv_type("ACK")["trial"] == t1
        good.send("RESULT", trial=t1, outcomes={"y": 1.5})  # at-least-once: acked again
        assert good.recv_type("ACK")["trial"] == t1
        evil.send("RESULT", trial=t1, outcomes={"y": -1000.0})  # completed, but not by evil
        assert evil.recv_type("ERROR")["code"] == "not_holder"

        # good dies holding t2's result; a new process (new session) delivers it from its
        # outbox, naming it in HELLO's holds; its other trials it may not touch
        good.close()
        keep_alive_until(
            lambda: count(db, "SELECT COUNT(*) FROM events WHERE kind='driver_lost'") == 1,
            20,
            evil,
        )
        good2 = RawDriver(ipc)
        try:
            hello(good2, "good", 1, session="s-good-2", holds=[f"{w['campaign_id']}/{t2}"])
            good2.campaign = evil.campaign
            good2.send("RESULT", trial=t3, outcomes={"y": -1000.0})
            assert good2.recv_type("ERROR")["code"] == "not_holder"
            good2.send("RESULT", trial=t2, outcomes={"y": 2.5})
            assert good2.recv_type("ACK")["trial"] == t2
            good2.send("RESULT", trial=t1, outcomes={"y": 1.5})  # its own, completed: acked
            assert good2.recv_type("ACK")["trial"] == t1
        finally:
            good2.close()
    finally:
        evil.close()
    rows = dict(db_rows(db, "SELECT trial_id, value FROM observations WHERE metric = 'y'"))
    assert rows == {t1: 1.5, t2: 2.5}
    assert db_rows(db, "SELECT driver FROM trials WHERE id IN (?, ?)", t1, t2) == [
        ("good",),
        ("good",),
    ]
    log = procs.log("controller.log")
    assert f"trial {t1} is not held by driver evil" in log


def curve_keys(tmp: Path) -> dict[str, Path]:
    for name in ("controller", "lab-a", "lab-b"):
        loopctl(
            "keys",
            "generate",
            name,
            "--out",
            str(tmp / ("keys" if name == "controller" else "allowed")),
        )
    return {
        "server": tmp / "keys" / "controller.key",
        "a": tmp / "allowed" / "lab-a.key_secret",
        "b": tmp / "allowed" / "lab-b.key_secret",
    }


def test_a_name_is_bound_to_its_first_curve_key(tmp_path: Path, procs: Procs, ipc: str) -> None:
    k = curve_keys(tmp_path)
    spec = branin(
        tmp_path,
        strategy={"method": "sobol"},
        budget={"trials": 3},
        # a spurious loss of lab-b (this machine busy) would record a second connection
        execution={"heartbeat_interval": 0.2, "heartbeat_timeout": scaled(1.5)},
        security={"curve_secret_key": "keys/controller.key_secret", "authorized_keys": "allowed"},
    )
    db = tmp_path / "k.db"
    ctl = procs.controller(spec, db, ipc)
    keys = ("--server-key", str(k["server"]))
    a = procs.driver(ipc, "lab-a", "--key", str(k["a"]), *keys, "--latency", "30")
    connected = "SELECT COUNT(*) FROM events WHERE kind = 'driver_connected'"
    keep_alive_until(lambda: count(db, connected) == 1, 30)
    a.send_signal(signal.SIGKILL)
    procs.exit_code(a, 10)
    keep_alive_until(
        lambda: count(db, "SELECT COUNT(*) FROM events WHERE kind = 'driver_lost'") == 1, 20
    )
    # lab-b's key is allowed in, but not under lab-a's name, not even with lab-a gone
    impostor = procs.driver(ipc, "lab-a", "--key", str(k["b"]), *keys)
    assert procs.exit_code(impostor, 30) == 3, procs.log("lab-a.log")
    assert "belongs to another CURVE key" in procs.log("lab-a.log")
    procs.driver(ipc, "lab-b", "--key", str(k["b"]), *keys, "--latency", "0.05")
    assert procs.exit_code(ctl, 60) == 0, procs.log("controller.log")
    names = [
        json.loads(p)["name"]
        for (p,) in db_rows(db, "SELECT payload FROM events WHERE kind = 'driver_connected'")
    ]
    assert names == ["lab-a", "lab-b"]
    assert {r[0] for r in db_rows(db, "SELECT driver FROM trials WHERE status='completed'")} == {
        "lab-b"
    }
