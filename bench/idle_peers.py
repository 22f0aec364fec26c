"""The honest driver's worst gap between results, with N idle peers connected, or under fuzz.

    .venv/bin/python bench/idle_peers.py --peers 0 --peers 500
    .venv/bin/python bench/idle_peers.py --peers 0 --fuzz 200

Each run starts a controller (Sobol, 150 trials, heartbeat 0.5 s) as its own process, one
honest oracle driver (latency 0.05 s), and once it has a result, N raw DEALER peers, each
saying HELLO under its own name and then only heartbeating, in this process. Peers past
execution.max_drivers are refused and heartbeat anyway (each heartbeat answered
hello_first). The gaps are between the honest driver's consecutive trial_completed events,
as recorded. With ``--fuzz RATE``, eight more DEALER sockets send RATE junk frames a second
between them (random bytes, random JSON, deep nesting, envelopes with wrong field types,
reports for trials that are not theirs) for the whole run; a stall is a gap longer than the
heartbeat timeout.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml
import zmq

ROOT = Path(__file__).resolve().parents[1]


def completed(db: Path) -> int:
    """Results recorded so far (0 while the database does not exist yet)."""
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            q = "SELECT COUNT(*) FROM events WHERE kind = 'trial_completed'"
            return int(conn.execute(q).fetchone()[0])
        finally:
            conn.close()
    except sqlite3.Error:
        return 0


def junk(rng: random.Random) -> bytes:
    """One hostile frame, of the kinds an adversarial review sent."""
    pick = rng.randrange(6)
    if pick == 0:
        return os.urandom(rng.randrange(1, 200))
    if pick == 1:
        depth = rng.choice((10, 1000, 100_000))
        return b"[" * depth + b"]" * depth
    if pick == 2:
        return json.dumps({"v": 1, "id": "a", "type": rng.choice(([], {}, 7, None))}).encode()
    if pick == 3:
        kind = rng.choice(("RESULT", "FAILED", "RELEASE", "HELLO", "COMMAND", "READY"))
        body = {"trial": f"T{rng.randrange(1, 200):04d}", "outcomes": {"y": -1000.0}}
        return json.dumps({"v": rng.choice((1, True, 2)), "id": "f", "type": kind, **body}).encode()
    if pick == 4:
        return json.dumps([rng.random() for _ in range(rng.randrange(50))]).encode()
    return rng.randbytes(rng.randrange(1, 64)) + b"{"


def run(n_peers: int, trials: int, max_drivers: int, fuzz: float = 0.0) -> dict[str, float]:
    tmp = Path(tempfile.mkdtemp(prefix="idle-peers-"))
    spec = yaml.safe_load((ROOT / "campaigns" / "branin.yaml").read_text())
    spec.update(strategy={"method": "sobol"}, budget={"trials": trials})
    spec["execution"] = {
        "heartbeat_interval": 0.5,
        "heartbeat_timeout": 5,
        "max_in_flight": 1,
        "max_drivers": max_drivers,
    }
    (tmp / "c.yaml").write_text(yaml.safe_dump(spec))
    db, ep = tmp / "c.db", f"ipc://{tmp}/ctl"
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    py = [sys.executable, "-m", "loopctl"]
    ctl = subprocess.Popen(
        [*py, "start", str(tmp / "c.yaml"), "--db", str(db), "--bind", ep],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        cwd=ROOT,
    )
    stop = threading.Event()

    def idle() -> None:
        ctx = zmq.Context()
        socks = []
        for i in range(n_peers):
            s = ctx.socket(zmq.DEALER)
            s.setsockopt(zmq.LINGER, 0)
            s.connect(ep)
            hello = {
                "v": 1,
                "id": "h",
                "type": "HELLO",
                "name": f"idle{i}",
                "kind": "x",
                "version": "1",
                "capacity": 1,
            }
            s.send(json.dumps(hello).encode())
            socks.append(s)
        beat = json.dumps({"v": 1, "id": "b", "type": "HEARTBEAT"}).encode()
        while not stop.is_set():
            for s in socks:
                s.send(beat, zmq.NOBLOCK)
                while s.poll(0):
                    s.recv()
            stop.wait(0.5)
        for s in socks:
            s.close()
        ctx.term()

    drv = subprocess.Popen(
        [
            *py,
            "driver",
            "oracle",
            "--connect",
            ep,
            "--name",
            "honest",
            "--latency",
            "0.05",
            "--outbox",
            str(tmp / "ob"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        cwd=ROOT,
    )
    sent = [0]

    def fuzzer() -> None:
        ctx = zmq.Context()
        socks = [ctx.socket(zmq.DEALER) for _ in range(8)]
        for s in socks:
            s.setsockopt(zmq.LINGER, 0)
            s.connect(ep)
        rng = random.Random(0)
        while not stop.is_set():
            s = rng.choice(socks)
            try:
                s.send(junk(rng), zmq.NOBLOCK)
                sent[0] += 1
            except zmq.Again:
                pass
            while s.poll(0):
                s.recv()
            stop.wait(1 / fuzz)
        for s in socks:
            s.close()
        ctx.term()

    while not completed(db):  # the honest driver is in first: peers past the cap wait
        time.sleep(0.1)
    t = threading.Thread(target=idle, daemon=True)
    t.start()
    if fuzz:
        threading.Thread(target=fuzzer, daemon=True).start()
    ctl.wait(900)
    stop.set()
    drv.wait(30)
    conn = sqlite3.connect(db)
    times = [
        r[0]
        for r in conn.execute("SELECT time FROM events WHERE kind = 'trial_completed' ORDER BY seq")
    ]
    idle_lost = conn.execute(
        "SELECT COUNT(*) FROM events WHERE kind = 'driver_lost' AND payload LIKE '%idle%'"
    ).fetchone()[0]
    lost = conn.execute(
        "SELECT COUNT(*) FROM events WHERE kind = 'driver_lost' AND payload LIKE '%honest%'"
    ).fetchone()[0]
    conn.close()
    gaps = sorted(b - a for a, b in itertools.pairwise(times))
    return {
        "peers": n_peers,
        "fuzz_frames": sent[0],
        "stalls": sum(g > spec["execution"]["heartbeat_timeout"] for g in gaps),
        "controller_exit": ctl.returncode,
        "max_drivers": max_drivers,
        "results": len(times),
        "worst_gap_s": round(gaps[-1], 3),
        "median_gap_s": round(gaps[len(gaps) // 2], 3),
        "honest_lost": lost,
        "idle_lost": idle_lost,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--peers", type=int, action="append", default=[])
    ap.add_argument("--trials", type=int, default=150)
    ap.add_argument("--max-drivers", type=int, default=128, help="execution.max_drivers")
    ap.add_argument("--fuzz", type=float, default=0.0, help="junk frames a second (0: none)")
    args = ap.parse_args()
    for n in args.peers or [0, 500]:
        print(json.dumps(run(n, args.trials, args.max_drivers, args.fuzz)), flush=True)


if __name__ == "__main__":
    main()
