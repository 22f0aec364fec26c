"""Crash storm: SIGKILL the controller and the driver again and again; nothing may be lost.

    .venv/bin/python bench/crash_storm.py --controller-kills 20 --driver-kills 10

A Sobol campaign of ``--trials`` trials on one oracle driver (latency 0.05 s). The
controller is killed ``--controller-kills`` times and resumed, the driver ``--driver-kills``
times (spread over the controller's lives) and restarted with the same name and outbox, each
kill at a random moment once at least one more result is recorded. Then the campaign is
resumed to its end. Prints trials completed, results recorded twice, trials that never got
one, and whether `audit` and `audit --receipts` pass.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from idle_peers import completed

ROOT = Path(__file__).resolve().parents[1]
PY = [sys.executable, "-m", "loopctl"]
ENV = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}


def launch(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*PY, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV, cwd=ROOT
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=100)
    ap.add_argument("--controller-kills", type=int, default=20)
    ap.add_argument("--driver-kills", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    tmp = Path(tempfile.mkdtemp(prefix="crash-storm-"))
    spec = yaml.safe_load((ROOT / "campaigns" / "branin.yaml").read_text())
    spec.update(strategy={"method": "sobol"}, budget={"trials": args.trials})
    spec["execution"] = {"heartbeat_interval": 0.2, "heartbeat_timeout": 1.0}
    (tmp / "c.yaml").write_text(yaml.safe_dump(spec))
    db, ep, outbox = tmp / "c.db", f"ipc://{tmp}/ctl", tmp / "ob"
    driver_args = ("driver", "oracle", "--connect", ep, "--name", "d", "--outbox", str(outbox))
    drv = launch(*driver_args, "--latency", "0.05")
    ctl = launch("start", str(tmp / "c.yaml"), "--db", str(db), "--bind", ep)
    kill_driver_at = set(rng.sample(range(args.controller_kills), args.driver_kills))
    for life in range(args.controller_kills):
        before = completed(db)
        while completed(db) <= before and ctl.poll() is None:
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.5))
        if life in kill_driver_at:
            drv.send_signal(signal.SIGKILL)
            drv.wait()
            drv = launch(*driver_args, "--latency", "0.05")
        if ctl.poll() is not None:
            break  # the campaign ended before this kill
        ctl.send_signal(signal.SIGKILL)
        ctl.wait()
        ctl = launch("resume", str(db))
    code = ctl.wait(900)
    try:  # told SHUTDOWN if connected at the end; else it waits to reconnect for a resume
        drv.wait(10)
    except subprocess.TimeoutExpired:
        drv.send_signal(signal.SIGTERM)
        drv.wait(30)
    conn = sqlite3.connect(db)
    per_trial = conn.execute(
        "SELECT trial_id, COUNT(*) FROM events WHERE kind = 'trial_completed' GROUP BY trial_id"
    ).fetchall()
    statuses = dict(conn.execute("SELECT status, COUNT(*) FROM trials GROUP BY status").fetchall())
    starts = conn.execute(
        "SELECT COUNT(*) FROM events WHERE kind = 'controller_started'"
    ).fetchone()[0]
    conn.close()
    audit = subprocess.run([*PY, "audit", str(db)], capture_output=True, env=ENV, cwd=ROOT)
    receipts = subprocess.run(
        [*PY, "audit", str(db), "--receipts", str(outbox)], capture_output=True, env=ENV, cwd=ROOT
    )
    print(
        json.dumps(
            {
                "trials": args.trials,
                "controller_starts": starts,
                "final_exit": code,
                "completed": statuses.get("completed", 0),
                "statuses": statuses,
                "recorded_twice": sum(n > 1 for _, n in per_trial),
                "audit_ok": audit.returncode == 0,
                "receipts_ok": receipts.returncode == 0,
            }
        )
    )


if __name__ == "__main__":
    main()
