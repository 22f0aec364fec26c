"""A running controller answers every bad message with ERROR and records nothing for it."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import zmq

from tests.conftest import TCP_ANY, Procs, scaled
from tests.specs import branin

pytestmark = pytest.mark.slow


class RawDriver:
    """A hand-driven DEALER: sends exactly the frames a test wants."""

    def __init__(self, endpoint: str) -> None:
        self.sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(endpoint)
        self.n = 0
        self.campaign: dict[str, str] = {}  # campaign_id and spec_hash, from WELCOME

    def send(self, type_: str, **body: Any) -> str:
        """RESULT and FAILED carry the campaign of the last WELCOME unless given."""
        self.n += 1
        mid = f"m{self.n}"
        if type_ in ("RESULT", "FAILED"):
            body = {**self.campaign, **body}
        self.sock.send(json.dumps({"v": 1, "id": mid, "type": type_, **body}).encode())
        return mid

    def recv(self, timeout: float = 10.0) -> dict[str, Any]:
        """The next message (``timeout``: on an idle machine; it is scaled). Connect once
        the controller serves (Procs.serving): its start-up is not part of this wait."""
        timeout = scaled(timeout)
        assert self.sock.poll(int(timeout * 1000)), f"no reply from the controller in {timeout:g} s"
        msg: dict[str, Any] = json.loads(self.sock.recv())
        if msg["type"] == "WELCOME":
            self.campaign = {k: msg[k] for k in ("campaign_id", "spec_hash")}
        return msg

    def recv_type(self, type_: str) -> dict[str, Any]:
        while True:
            msg = self.recv()
            if msg["type"] == type_:
                return msg

    def close(self) -> None:
        self.sock.close()


def fingerprint(db: Path) -> tuple[Any, ...]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return (
            conn.execute("SELECT COUNT(*), MAX(seq) FROM events").fetchone(),
            conn.execute("SELECT id, status, attempts FROM trials ORDER BY id").fetchall(),
            conn.execute("SELECT * FROM observations ORDER BY trial_id").fetchall(),
        )
    finally:
        conn.close()


@pytest.fixture
def session(tmp_path: Path, procs: Procs) -> Any:
    spec = branin(
        tmp_path,
        strategy={"method": "sobol"},
        execution={"max_in_flight": 2, "heartbeat_timeout": 60},
    )
    db = tmp_path / "m.db"
    ctl = procs.controller(spec, db, TCP_ANY)
    ep = procs.endpoint(ctl)
    procs.serving(ctl, db)
    d = RawDriver(ep)
    d.send("HELLO", name="raw", kind="test", version="1", capacity=2)
    assert d.recv_type("WELCOME")["campaign"] == "branin"
    d.send("READY")  # no task before the driver says it can run this campaign
    tasks = [d.recv_type("TASK"), d.recv_type("TASK")]
    yield d, db, tasks, procs, ep
    d.close()


def test_result_is_acked_once_and_repeat_changes_nothing(session: Any) -> None:
    d, db, tasks, procs, _ = session
    t = tasks[0]["trial"]
    mid = d.send("RESULT", trial=t, outcomes={"y": 12.5})
    ack = d.recv_type("ACK")
    assert ack["trial"] == t and ack["ref"] == mid
    d.recv_type("TASK")  # the freed slot is refilled; after that the campaign is quiet
    before = fingerprint(db)
    d.send("RESULT", trial=t, outcomes={"y": 99.0})
    assert d.recv_type("ACK")["trial"] == t  # acknowledged again: the driver may forget it
    after = fingerprint(db)
    assert after[0] == before[0] and after[2] == before[2]  # no event, value still 12.5
    assert (t, "y", 12.5) == after[2][0][:3]
    assert procs.procs[0].poll() is None


BAD: dict[str, tuple[dict[str, Any], str]] = {
    "unknown trial": (
        {"type": "RESULT", "trial": "T9999", "outcomes": {"y": 1.0}},
        "unknown_trial",
    ),
    "NaN value": (
        {"type": "RESULT", "trial": "{t}", "outcomes": {"y": float("nan")}},
        "invalid_value",
    ),
    "missing objective": ({"type": "RESULT", "trial": "{t}", "outcomes": {}}, "invalid_value"),
    "unknown objective": (
        {"type": "RESULT", "trial": "{t}", "outcomes": {"y": 1, "z": 2}},
        "invalid_value",
    ),
    "unknown field": (
        {"type": "RESULT", "trial": "{t}", "outcomes": {"y": 1}, "parameters": {"x9": 1}},
        "bad_field",
    ),
    "wrong type": (
        {"type": "FAILED", "trial": "{t}", "reason": 5, "retryable": False},
        "bad_field",
    ),
    "unknown type": ({"type": "GIMME"}, "unknown_type"),
    "bad version": (
        {"type": "RESULT", "v": 99, "trial": "{t}", "outcomes": {"y": 1}},
        "bad_version",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_message_gets_error_and_changes_nothing(session: Any, case: str) -> None:
    d, db, tasks, procs, _ = session
    t = tasks[1]["trial"]
    body, code = BAD[case]
    msg = {
        "v": 1,
        "id": "bad1",
        **(d.campaign if body["type"] in ("RESULT", "FAILED") else {}),
        **{k: (v.replace("{t}", t) if isinstance(v, str) else v) for k, v in body.items()},
    }
    before = fingerprint(db)
    d.sock.send(json.dumps(msg).encode())  # json writes NaN as the bare token NaN
    err = d.recv_type("ERROR")
    assert err["code"] == code, err
    assert err["message"]
    assert fingerprint(db) == before
    assert procs.procs[0].poll() is None
    # and the same trial still accepts a good result afterwards
    d.send("RESULT", trial=t, outcomes={"y": 3.0})
    assert d.recv_type("ACK")["trial"] == t


def test_non_json_and_extra_frames_get_error(session: Any) -> None:
    d, db, _, procs, _ = session
    before = fingerprint(db)
    d.sock.send(b"\xff\xfe not json")
    assert d.recv_type("ERROR")["code"] == "bad_json"
    d.sock.send_multipart([b"{}", b"{}"])
    assert d.recv_type("ERROR")["code"] == "bad_envelope"
    d.sock.send(b"[1, 2]")
    assert d.recv_type("ERROR")["code"] == "bad_envelope"
    assert fingerprint(db) == before
    assert procs.procs[0].poll() is None


def test_message_before_hello_is_refused(session: Any) -> None:
    d, db, tasks, _procs, ep = session
    before = fingerprint(db)
    stranger = RawDriver(ep)
    try:
        stranger.send("RESULT", trial=tasks[0]["trial"], outcomes={"y": 0.0}, **d.campaign)
        assert stranger.recv_type("ERROR")["code"] == "hello_first"
    finally:
        stranger.close()
    assert fingerprint(db) == before


def test_drivers_past_the_limit_and_hello_floods_are_refused_unrecorded(
    tmp_path: Path, procs: Procs
) -> None:
    spec = branin(
        tmp_path,
        strategy={"method": "sobol"},
        execution={"max_drivers": 3, "heartbeat_timeout": 60},
    )
    db = tmp_path / "cap.db"
    ctl = procs.controller(spec, db, TCP_ANY)
    ep = procs.endpoint(ctl)
    procs.serving(ctl, db)
    peers = [RawDriver(ep) for _ in range(6)]
    for i, p in enumerate(peers):
        p.send("HELLO", name=f"p{i}", kind="test", version="1", capacity=1)
    answers = [p.recv() for p in peers]
    kinds = sorted(a["type"] if a["type"] == "WELCOME" else a["code"] for a in answers)
    assert kinds == ["WELCOME"] * 3 + ["too_many_drivers"] * 3, answers
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    connected = conn.execute("SELECT COUNT(*) FROM events WHERE kind = 'driver_connected'")
    assert connected.fetchone()[0] == 3  # nothing recorded for a refused HELLO
    flood = RawDriver(ep)
    for _ in range(12):
        flood.send("HELLO", name="flood", kind="test", version="1", capacity=1)
    codes = [flood.recv()["code"] for _ in range(12)]
    assert codes == ["too_many_drivers"] * 10 + ["slow_down"] * 2, codes
    welcomed = [p for p, a in zip(peers, answers, strict=True) if a["type"] == "WELCOME"]
    waiting = [p for p, a in zip(peers, answers, strict=True) if a["type"] != "WELCOME"]
    welcomed[0].send("BYE")
    waiting[0].send("HELLO", name="late", kind="test", version="1", capacity=1)
    assert waiting[0].recv_type("WELCOME")  # a slot freed is a slot offered
    rows = conn.execute("SELECT COUNT(*) FROM events WHERE kind = 'driver_connected'")
    assert rows.fetchone()[0] == 4
    conn.close()
    for p in [*peers, flood]:
        p.close()
