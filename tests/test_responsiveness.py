"""The event loop keeps answering while a model fits in its worker thread."""

from __future__ import annotations

import asyncio
import math
import select
import time
from pathlib import Path

import numpy as np
import pytest
import zmq

from loopctl import Campaign, protocol
from loopctl.controller import Controller, PendingReplies
from loopctl.spec import load_spec
from loopctl.store import Store
from loopctl.strategies import make_strategy
from tests.conftest import TCP_ANY, Procs, loopctl, scaled
from tests.specs import branin
from tests.test_bad_messages import RawDriver

pytestmark = pytest.mark.slow

SPEC = {
    "name": "big",
    "seed": 5,
    "space": [{"name": f"x{i}", "type": "range", "bounds": [0, 1]} for i in range(6)],
    "objectives": [{"name": "y", "goal": "minimize"}],
    "budget": {"trials": 1},
    "execution": {"max_in_flight": 1, "heartbeat_interval": 0.1, "heartbeat_timeout": 30},
    "strategy": {"method": "botorch"},
}


def test_heartbeats_are_answered_during_a_model_fit(tmp_path: Path, procs: Procs) -> None:
    db = tmp_path / "big.db"
    rng = np.random.default_rng(0)
    x = rng.random((400, 6))
    rows = ["x0,x1,x2,x3,x4,x5,y"] + [
        ",".join(f"{v:.6f}" for v in r) + f",{math.sin(7 * r.sum()) + r[0]:.6f}" for r in x
    ]
    (tmp_path / "past.csv").write_text("\n".join(rows) + "\n")
    Campaign.create(SPEC, db).close()
    loopctl("import", str(db), str(tmp_path / "past.csv"))
    ctl = procs.start("-v", "resume", str(db), "--bind", TCP_ANY, "--trials", "1", log="resume.log")
    ep = procs.endpoint(ctl)
    # it loads the model libraries before serving, which is not what this test is about
    procs.serving(ctl, db)
    d = RawDriver(ep)
    d.send("HELLO", name="hb", kind="test", version="1", capacity=1)
    d.recv_type("WELCOME")
    d.send("READY")
    t0, gaps, task = time.monotonic(), [], None
    while task is None and time.monotonic() - t0 < scaled(120):
        sent = time.monotonic()
        d.send("HEARTBEAT")
        while True:
            msg = d.recv(timeout=30)
            if msg["type"] == "HEARTBEAT":
                gaps.append(time.monotonic() - sent)
                break
            if msg["type"] == "TASK":
                task = msg
        time.sleep(0.05)
    d.close()
    waited = time.monotonic() - t0
    assert task is not None, procs.log("resume.log")
    assert waited > 0.5, "the proposal was too quick to show anything"
    print(f"fit {waited:.2f} s, {len(gaps)} heartbeats, slowest reply {max(gaps):.3f} s")
    # answered while the model fitted, not after it: a loop blocked by the fit answers
    # nothing until the TASK, then its one heartbeat after waiting about the whole fit
    # (a bound relative to the fit, so that it holds on a machine of any speed and load)
    assert len(gaps) >= 5, f"{len(gaps)} heartbeats answered during a {waited:.1f} s fit"
    assert max(gaps) < waited / 4, f"a heartbeat waited {max(gaps):.2f} s of a {waited:.1f} s fit"


def test_a_frame_that_arrives_while_the_controller_sends_is_read(tmp_path: Path, ipc: str) -> None:
    """The controller sends on a plain socket sharing its asyncio socket's handle. libzmq
    signals new input once, on a file descriptor that any operation on the socket may
    clear: a send that happens to take in the signal of a frame that just arrived used
    to leave that frame unread (and its sender unanswered) until another frame came.
    With one driver waiting for a reply, that was until its heartbeat timeout."""
    spec = load_spec(branin(tmp_path, strategy={"method": "sobol"}))
    store = Store.create(tmp_path / "w.db", spec.raw, spec.hash, {})
    ctl = Controller(store, spec, make_strategy(spec))
    ctl.bind(ipc)
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    waiting, other = ctx.socket(zmq.DEALER), ctx.socket(zmq.DEALER)
    for s in (waiting, other):
        s.setsockopt(zmq.LINGER, 0)
        s.connect(ipc)

    async def scenario() -> list[bytes]:
        assert ctl.sock is not None and ctl._raw is not None
        other.send(b"first")
        (identity, _) = await asyncio.wait_for(ctl.sock.recv_multipart(), scaled(10))
        recv = ctl.sock.recv_multipart()  # as the receive task: parked on the descriptor
        await asyncio.sleep(0)
        waiting.send(b"ping")
        # the loop is busy (a commit) while the frame's signal arrives ...
        fd = int(ctl._raw.getsockopt(zmq.FD))
        assert select.select([fd], [], [], scaled(10))[0], "the frame never arrived"
        time.sleep(0.01)  # past libzmq's command throttle (~1 ms), so the send takes it in
        # ... and then it answers another driver
        await ctl._flush(PendingReplies([(identity, protocol.make("HEARTBEAT"))]))
        frames: list[bytes] = await asyncio.wait_for(recv, scaled(10))
        return frames

    try:
        frames = asyncio.run(scenario())
    finally:
        waiting.close()
        other.close()
        assert ctl.sock is not None and ctl.ops is not None
        ctl.sock.close(0)
        ctl.ops.close(0)  # the operator socket too, or term() waits for it forever
        ctl.ctx.term()
        store.close()
    assert frames[1] == b"ping"
