"""Controller overhead: trials per second and result-to-next-task latency.

Runs the real controller and N real oracle driver processes over tcp loopback,
with the zero-latency `function` oracle and the Sobol strategy, so what is
measured is loopctl itself: protocol, group commit, dispatch. Latency is read
from the campaign database afterwards: for every result, the time from its
commit to the commit of the next task sent to the same driver.

    python bench/overhead.py [--drivers 1 8 32] [--trials 1500] [--sync FULL NORMAL]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE")


def free_endpoint() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


def spec_file(tmp: Path, trials: int, in_flight: int, heartbeat_timeout: float = 30) -> Path:
    """A Sobol Branin campaign (no model: the overhead is the controller's own)."""
    data = yaml.safe_load((ROOT / "campaigns" / "branin.yaml").read_text())
    data["budget"] = {"trials": trials}
    data["strategy"] = {"method": "sobol"}
    data["execution"] = {
        "max_in_flight": in_flight,
        "heartbeat_interval": 1.0,
        "heartbeat_timeout": heartbeat_timeout,
    }
    path = tmp / "bench.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def run_once(n_drivers: int, trials: int, sync: str) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        ep, db = free_endpoint(), tmp / "bench.db"
        ctl = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "loopctl",
                "start",
                str(spec_file(tmp, trials, n_drivers)),
                "--db",
                str(db),
                "--bind",
                ep,
                "--sync",
                sync,
            ],
            env=ENV,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        drivers = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "loopctl",
                    "driver",
                    "oracle",
                    "--connect",
                    ep,
                    "--name",
                    f"d{i}",
                    "--outbox",
                    str(tmp / f"ob{i}"),
                ],
                env=ENV,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for i in range(n_drivers)
        ]
        try:
            _, err = ctl.communicate(timeout=600)
            if ctl.returncode != 0:
                raise RuntimeError(err.decode())
        finally:
            for p in drivers:
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
        return measure(db, trials)


def measure(db: Path, trials: int) -> dict[str, float]:
    conn = sqlite3.connect(db)
    rows = conn.execute(
        "SELECT time, kind, payload FROM events WHERE kind IN "
        "('trial_completed', 'trial_dispatched') ORDER BY seq"
    ).fetchall()
    conn.close()
    waiting: dict[str, float] = {}
    gaps, first, last = [], None, None
    for t, kind, payload in rows:
        driver = json.loads(payload)["driver"]
        if kind == "trial_dispatched":
            first = t if first is None else first
            if driver in waiting:
                gaps.append(t - waiting.pop(driver))
        else:
            last = t
            waiting[driver] = t
    assert first is not None and last is not None
    gaps.sort()
    return {
        "trials_per_s": trials / (last - first),
        "median_ms": 1000 * statistics.median(gaps),
        "p99_ms": 1000 * gaps[min(len(gaps) - 1, int(0.99 * len(gaps)))],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--drivers", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--trials", type=int, default=1500)
    ap.add_argument("--sync", nargs="+", default=["FULL", "NORMAL"])
    args = ap.parse_args()
    print("| sync | drivers | trials/s | result->next task median (ms) | p99 (ms) |")
    print("| --- | --- | --- | --- | --- |")
    for sync in args.sync:
        for n in args.drivers:
            r = run_once(n, args.trials, sync)
            print(
                f"| {sync} | {n} | {r['trials_per_s']:.0f} | {r['median_ms']:.2f} | "
                f"{r['p99_ms']:.2f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
