"""Whatever frames reach a running controller's socket, each is answered (or, for the
few valid messages that need no reply, handled), nothing stalls, and an honest driver
still completes its trials afterwards."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from loopctl import protocol
from tests.conftest import Procs, count
from tests.specs import branin
from tests.test_bad_messages import RawDriver
from tests.test_protocol_fuzz import json_values

pytestmark = pytest.mark.slow

NASTY = [
    b'{"v":1,"id":"a","type":[]}',  # used to kill the receive task (TypeError)
    b"[" * 100000 + b"]" * 100000,  # used to kill it too (RecursionError)
    b'{"v":true,"id":"a","type":"HEARTBEAT"}',  # was taken for version 1
    b'{"v":1,"id":"a","type":{"x":1}}',
    b"\xff\xfe",
    b"",
]
TYPES = [*sorted(protocol.FROM_DRIVER - {"COMMAND", "HELLO", "BYE"}), "TASK", "", "x"]


@st.composite
def frames(draw: Any) -> bytes:
    kind = draw(st.sampled_from(["bytes", "json", "envelope", "nested"]))
    if kind == "bytes":
        return bytes(draw(st.binary(max_size=64)))
    if kind == "json":
        return json.dumps(draw(json_values)).encode()
    if kind == "nested":
        n = draw(st.integers(min_value=20, max_value=5000))
        return draw(st.sampled_from([b"[", b'{"a":'])) * n
    msg: dict[str, Any] = {
        "v": draw(st.sampled_from([1, 1, True, 1.0, "1", None, 2])),
        "id": draw(st.sampled_from(["a", "", 5, None, ["a"]])),
        "type": draw(st.sampled_from([*TYPES, None, [], {}, 7])),
    }
    for key in draw(st.lists(st.sampled_from(["trial", "outcomes", "reason", "x"]), max_size=3)):
        msg[key] = draw(json_values)
    return json.dumps(msg).encode()


def test_random_frames_over_a_real_socket(tmp_path: Path, procs: Procs, ipc: str) -> None:
    spec = branin(
        tmp_path,
        strategy={"method": "sobol"},
        budget={"trials": 3},
        execution={"heartbeat_interval": 0.5, "heartbeat_timeout": 600},
    )
    db = tmp_path / "f.db"
    ctl = procs.controller(spec, db, ipc)
    procs.serving(ctl, db)
    fuzzer = RawDriver(ipc)
    n = {"sent": 0}

    @settings(
        max_examples=300,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(frame=frames())
    @example(frame=NASTY[0])
    @example(frame=NASTY[1])
    @example(frame=NASTY[2])
    @example(frame=NASTY[3])
    @example(frame=NASTY[4])
    @example(frame=NASTY[5])
    def check(frame: bytes) -> None:
        n["sent"] += 1
        fuzzer.sock.send(frame)
        probe = f"probe{n['sent']}"
        # a probe after each frame: its answer proves the frame was dealt with, in order
        fuzzer.sock.send(json.dumps({"v": 1, "id": probe, "type": "HEARTBEAT"}).encode())
        replies = []
        while True:
            reply = fuzzer.recv(timeout=10)
            if reply.get("ref") == probe:
                break
            replies.append(reply)
        # never registered (it never says HELLO), so every frame, well-formed or not,
        # is refused with exactly one ERROR, before the probe is answered
        assert [r["type"] for r in replies] == ["ERROR"], (frame[:80], replies)
        assert ctl.poll() is None

    try:
        check()
    finally:
        fuzzer.close()
    assert count(db, "SELECT COUNT(*) FROM trials WHERE status = 'completed'") == 0
    procs.driver(ipc, "honest", "--latency", "0.05")
    assert procs.exit_code(ctl, 60) == 0, procs.log("controller.log")[-3000:]
    assert count(db, "SELECT COUNT(*) FROM trials WHERE status = 'completed'") == 3
    log = procs.log("controller.log")
    assert "bad message from unregistered peer" in log
    assert "Traceback" not in log  # all refusals, no internal error
    assert "messages in the last" in log  # the rate-limited warnings' summary line
