"""Trials per hour of the EMT alloy campaign through `driver parsl` vs plain oracle drivers.

    .venv/bin/python bench/parsl_scaling.py --trials 30 --workers 1,2,4 [--latency 1]

For each worker count N: the campaign (campaigns/alloy-mixing.yaml, its own strategy,
``max_in_flight`` N) runs once through one `loopctl driver parsl --preset local --workers N`
and once through N `loopctl driver oracle` processes, each time with a fresh controller.
``--latency`` adds seconds to every evaluation, standing in for a longer calculation.

Printed per run, from the campaign database (so the engine's start-up, before the first
dispatch, is left out):

- trials/h: completed trials over the time from the first dispatch to the last result;
- busy: the share of N workers' time that a trial held them (dispatch to report), the rest
  is time waiting for the controller's next proposal;
- compute: (parsl only) the share spent inside the oracle on a worker, as the worker timed
  it; busy minus compute is the engine's own transit (driver, interchange, worker pool);
- start s: from the controller's start to the first dispatch (the engine's start-up).
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE")


def _spec(tmp: Path, trials: int, workers: int, latency: float) -> Path:
    data = yaml.safe_load((ROOT / "campaigns" / "alloy-mixing.yaml").read_text())
    data["budget"] = {"trials": trials}
    data["execution"] = {**data["execution"], "max_in_flight": workers, "heartbeat_timeout": 30}
    data["drivers"] = {"spawn": 0}
    if latency:
        data["oracle"]["latency"] = latency
    path = tmp / "campaign.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _loopctl(*args: str, log: Path) -> subprocess.Popen[bytes]:
    out = open(log, "w")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(
        [sys.executable, "-m", "loopctl", *args], stdout=out, stderr=subprocess.STDOUT, env=ENV
    )


def run(mode: str, workers: int, trials: int, latency: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="lc-bench-", dir="/tmp") as d:
        tmp = Path(d)
        db, ep = tmp / "c.db", f"ipc://{tmp}/ctl"
        ctl = _loopctl(
            "start",
            str(_spec(tmp, trials, workers, latency)),
            "--db",
            str(db),
            "--bind",
            ep,
            log=tmp / "ctl.log",
        )
        common = ["--connect", ep]
        if mode == "parsl":
            drivers = [
                _loopctl(
                    "driver",
                    "parsl",
                    "--preset",
                    "local",
                    "--workers",
                    str(workers),
                    "--name",
                    "farm",
                    "--outbox",
                    str(tmp / "ob"),
                    "--run-dir",
                    str(tmp / "rd"),
                    *common,
                    log=tmp / "farm.log",
                )
            ]
        else:
            drivers = [
                _loopctl(
                    "driver",
                    "oracle",
                    "--name",
                    f"d{i}",
                    "--outbox",
                    str(tmp / f"ob{i}"),
                    *common,
                    log=tmp / f"d{i}.log",
                )
                for i in range(workers)
            ]
        if ctl.wait(1800) != 0:
            raise SystemExit(
                f"{mode} x{workers}: controller failed:\n{(tmp / 'ctl.log').read_text()}"
            )
        for p in drivers:
            p.wait(120)
        return _measure(db, workers)


def _measure(db: Path, workers: int) -> dict[str, float]:
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute(
            "SELECT started_at, finished_at FROM trials WHERE started_at IS NOT NULL "
            "AND finished_at IS NOT NULL"
        ).fetchall()
        (done,) = conn.execute("SELECT COUNT(*) FROM trials WHERE status='completed'").fetchone()
        (t0,) = conn.execute(
            "SELECT MIN(time) FROM events WHERE kind='controller_started'"
        ).fetchone()
        compute = sum(
            json.loads(p).get("metadata", {}).get("seconds", 0.0)
            for (p,) in conn.execute("SELECT payload FROM events WHERE kind='trial_completed'")
        )
    finally:
        conn.close()
    first = min(s for s, _ in rows)
    span = max(f for _, f in rows) - first
    held = sum(f - s for s, f in rows)
    return {
        "trials": done,
        "per_hour": done / span * 3600,
        "busy": held / (workers * span),
        "compute": compute / (workers * span),
        "startup": first - t0,
        "span": span,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=30)
    ap.add_argument("--workers", default="1,2,4")
    ap.add_argument("--latency", type=float, default=0.0, help="seconds added per evaluation")
    args = ap.parse_args()
    cores = os.cpu_count()
    print(f"EMT alloy-mixing, {args.trials} trials, latency {args.latency:g} s, {cores} cores")
    head = ("driver", "N", "trials/h", "busy", "compute", "span s", "start s")
    print("{:>8} {:>2} {:>9} {:>6} {:>8} {:>7} {:>8}".format(*head))
    for n in (int(w) for w in args.workers.split(",")):
        for mode in ("parsl", "oracle"):
            t = time.monotonic()
            r = run(mode, n, args.trials, args.latency)
            compute = f"{r['compute']:8.0%}" if mode == "parsl" else f"{'-':>8}"
            print(
                f"{mode:>8} {n:>2} {r['per_hour']:9.0f} {r['busy']:6.0%} {compute} "
                f"{r['span']:7.1f} {r['startup']:8.1f}   ({time.monotonic() - t:.0f} s)",
                flush=True,
            )


if __name__ == "__main__":
    main()
