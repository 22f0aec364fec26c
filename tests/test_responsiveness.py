"""The event loop keeps answering while a model fits in its worker thread."""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pytest

from loopctl import Campaign
from tests.conftest import Procs, count, free_endpoint, loopctl, wait_for
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
    ep = free_endpoint()
    procs.start("-v", "resume", str(db), "--bind", ep, "--trials", "1", log="resume.log")
    # it loads the model libraries before serving: on a busy machine that alone can take
    # longer than the driver's wait for WELCOME, which is not what this test measures
    wait_for(
        lambda: count(db, "SELECT COUNT(*) FROM events WHERE kind = 'controller_started'") > 0,
        120,
        "the controller to serve",
    )
    d = RawDriver(ep)
    d.send("HELLO", name="hb", kind="test", version="1", capacity=1)
    d.recv_type("WELCOME")
    d.send("READY")
    t0, gaps, task = time.monotonic(), [], None
    while task is None and time.monotonic() - t0 < 120:
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
    assert len(gaps) >= 5
    print(f"fit {waited:.2f} s, {len(gaps)} heartbeats, slowest reply {max(gaps):.3f} s")
    assert max(gaps) < 0.5, f"a heartbeat waited {max(gaps):.2f} s during a {waited:.1f} s fit"
