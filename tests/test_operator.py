"""Operator control of a running campaign: approval gate, rejection, suggestions, pause."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.conftest import TCP_ANY, Procs, count, db_rows, loopctl, scaled, wait_for
from tests.specs import branin

pytestmark = pytest.mark.slow


def statuses(db: Path) -> dict[str, str]:
    if count(db, "SELECT COUNT(*) FROM trials") == 0:
        return {}
    return dict(db_rows(db, "SELECT id, status FROM trials"))


def test_manual_approval_reject_suggest_pause(tmp_path: Path, procs: Procs) -> None:
    spec = branin(
        tmp_path,
        strategy={"method": "sobol"},
        budget={"trials": 4},
        execution={"max_in_flight": 2, "approval": "manual"},
    )
    db = tmp_path / "op.db"
    ctl = procs.controller(spec, db, TCP_ANY)
    procs.driver(procs.endpoint(ctl), "d", "--latency", "0.2")
    wait_for(lambda: len(statuses(db)) == 2, 20, "two proposals")
    wait_for(lambda: "driver d connected" in procs.log("controller.log"), 20, "the driver")
    # heartbeats are asked of the controller (they are not in the database)
    heard = json.loads(loopctl("status", str(db), "--json").stdout)["heartbeats"]
    assert [h["name"] for h in heard] == ["d"] and 0 <= heard[0]["seconds_since_heard"] < scaled(30)
    assert "(d heard " in loopctl("status", str(db)).stdout
    assert set(statuses(db).values()) == {"proposed"}  # nothing runs unapproved
    waiting = sorted(statuses(db))
    pending = json.loads(loopctl("pending", str(db), "--json").stdout)
    assert [p["trial"] for p in pending] == waiting and "x1" in pending[0]["parameters"]
    assert f"2 awaiting approval (loopctl approve {db}" in loopctl("status", str(db)).stdout
    wait_for(
        lambda: all(f"{t} waits for approval: x1=" in procs.log("controller.log") for t in waiting),
        20,
        "the controller to say what waits",
    )
    r = loopctl("approve", str(db), "T0001", "--operator", "ann")
    assert "approved T0001" in r.stdout
    wait_for(lambda: statuses(db).get("T0001") == "completed", 20, "T0001 to run")
    r = loopctl("reject", str(db), "T0002", "--reason", "too hot for the furnace")
    assert "rejected T0002" in r.stdout
    assert statuses(db)["T0002"] == "rejected"
    loopctl("pause", str(db))
    assert "PAUSED" in loopctl("status", str(db)).stdout
    r = loopctl("suggest", str(db), "--set", "x1=3.14", "--set", "x2=2.27", "--operator", "bob")
    (tid,) = [w for w in r.stdout.split() if w.startswith("T")]
    # the controller answered the suggestion after the batch that recorded it, and that
    # batch also dispatched what it could to the idle driver: nothing, being paused
    assert statuses(db)[tid] == "approved"
    loopctl("unpause", str(db))
    wait_for(lambda: statuses(db).get(tid) == "completed", 20, "the suggestion to run")
    bad = loopctl("suggest", str(db), "--set", "x1=99", "--set", "x2=1", check=False)
    assert bad.returncode == 1 and "x1: 99 is outside the bounds" in bad.stderr
    bad = loopctl("approve", str(db), "T0001", check=False)
    assert bad.returncode == 1 and "T0001 is completed" in bad.stderr
    # the rest of the budget: approve whatever is proposed until the campaign ends
    end = time.monotonic() + scaled(60)
    while ctl.poll() is None and time.monotonic() < end:
        for t, s in statuses(db).items():
            if s == "proposed":
                loopctl("approve", str(db), t, check=False)
        time.sleep(0.3)  # pacing only
    assert procs.exit_code(ctl, 5) == 0, procs.log("controller.log")
    final = statuses(db)
    assert list(final.values()).count("completed") == 4 and final["T0002"] == "rejected"
    origins = dict(db_rows(db, "SELECT id, origin FROM trials"))
    assert origins[tid] == "suggested"
    report = json.loads(loopctl("audit", str(db), "--json").stdout)
    lines = [e["event"] for e in report["timeline"]]
    assert "approved by ann" in lines and "rejected by " in " ".join(lines)
    assert "dispatching paused by" in " ".join(lines)


def test_commands_apply_to_a_stopped_campaign(tmp_path: Path) -> None:
    from loopctl import Campaign

    db = tmp_path / "s.db"
    spec = branin(tmp_path, strategy={"method": "sobol"}, execution={"approval": "manual"})
    with Campaign.create(spec, db) as c:
        c.ask(1)
    r = loopctl("suggest", str(db), "--set", "x1=1", "--set", "x2=2")
    assert "controller not running" in r.stdout
    assert statuses(db)["T0002"] == "approved"


def test_a_driver_socket_cannot_command(tmp_path: Path, procs: Procs) -> None:
    """COMMAND on the drivers' socket is refused and records nothing; the operator socket
    sits in a directory only the controller's user can enter, and `loopctl pause` uses it."""
    import os
    import stat

    import zmq

    from loopctl import protocol

    spec = branin(tmp_path, strategy={"method": "sobol"}, budget={"trials": 3})
    db = tmp_path / "op.db"
    ctl = procs.controller(spec, db, TCP_ANY)
    ep = procs.endpoint(ctl)
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        sock.connect(ep)
        sock.send(protocol.encode(protocol.make("COMMAND", action="pause", operator="mallory")))
        assert sock.poll(int(scaled(20) * 1000)), "no answer to COMMAND on the drivers' socket"
        reply = json.loads(sock.recv())
    finally:
        sock.close()
        ctx.term()
    assert reply["type"] == "ERROR" and reply["code"] == "not_operator", reply
    assert count(db, "SELECT COUNT(*) FROM events WHERE kind = 'campaign_paused'") == 0
    (payload,) = db_rows(db, "SELECT payload FROM events WHERE kind = 'controller_started'")[0]
    path = json.loads(payload)["operator"].removeprefix("ipc://")
    assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
    assert "dispatching paused" in loopctl("pause", str(db), "--operator", "ann").stdout
    assert count(db, "SELECT COUNT(*) FROM events WHERE kind = 'campaign_paused'") == 1
    procs.driver(ep, "d")  # paused: it waits; unpaused, the campaign ends
    loopctl("unpause", str(db))
    assert procs.exit_code(ctl, 60) == 0, procs.log("controller.log")
    assert not os.path.exists(os.path.dirname(path))  # cleaned up on the way out
