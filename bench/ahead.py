"""Driver idle time while the model thinks, with and without propose-ahead, side by side.

    OPENBLAS_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE .venv/bin/python bench/ahead.py \\
        --latency 0.05 --latency 1 --latency 10 --trials 300 --ahead 0 --ahead 2

Each run is a real campaign: `loopctl start` (its own process) on Hartmann 6 (`auto`: the
initial design, then the GP with log-noisy EI), spawning 4 oracle drivers whose evaluations
take ``--latency`` seconds, with ``execution.max_in_flight: 4`` and ``execution.ahead`` K
(0: off, today's behaviour). The runs of one latency start together (``--together``, the
default) so that they share the machine's load; otherwise one after the other.

Idle time is read from the campaign's own log: a driver is busy from a trial's
``trial_dispatched`` to its ``trial_completed`` (both stamped by the controller), and the
idle fraction is 1 - busy / (drivers x span), the span running from the first dispatch to
the last result. Also reported: proposals made, ready candidates withdrawn as stale, the
median and longest proposal (``time_total_s`` of each model-based ``proposal_made``), the best value
found and its regret against Hartmann 6's minimum (-3.32237).
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import math
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
OPTIMUM = -3.32237
DRIVERS = 4


def campaign(trials: int, latency: float, ahead: int, seed: int) -> dict[str, Any]:
    execution: dict[str, Any] = {
        "max_in_flight": DRIVERS,
        "ahead": ahead,  # written even when 0: the default is on
        "heartbeat_interval": 1.0,
        "heartbeat_timeout": 30,
    }
    return {
        "name": f"ahead-{ahead}",
        "seed": seed,
        "space": [{"name": f"x{i}", "type": "range", "bounds": [0, 1]} for i in range(1, 7)],
        "objectives": [{"name": "y", "goal": "minimize"}],
        "budget": {"trials": trials},
        "execution": execution,
        "strategy": {"method": "auto"},
        "oracle": {"kind": "function", "function": "hartmann6", "latency": latency},
        "drivers": {"spawn": DRIVERS},
    }


def start(tmp: Path, spec: dict[str, Any]) -> tuple[subprocess.Popen[bytes], Path]:
    (tmp / "c.yaml").write_text(yaml.safe_dump(spec))
    db = tmp / "c.db"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "loopctl", "start", str(tmp / "c.yaml"), "--db", str(db)],
        stdout=subprocess.DEVNULL,
        stderr=open(tmp / "controller.log", "wb"),  # noqa: SIM115 (closed with the process)
        env=env,
        cwd=ROOT,
    )
    return proc, db


def measure(db: Path) -> dict[str, Any]:
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute(
            "SELECT kind, trial_id, time, payload FROM events WHERE kind IN "
            "('trial_dispatched', 'trial_completed', 'proposal_made', 'trial_abandoned') "
            "ORDER BY seq"
        ).fetchall()
    finally:
        conn.close()
    started: dict[str, float] = {}
    busy = 0.0
    first = last = None
    best = math.inf
    totals: list[float] = []
    withdrawn = 0
    for kind, tid, t, payload in rows:
        p = json.loads(payload)
        if kind == "trial_dispatched":
            started[tid] = t
            first = t if first is None else first
        elif kind == "trial_completed" and tid in started:
            busy += t - started.pop(tid)
            last = t
            best = min(best, p["outcomes"]["y"]["value"])
        elif kind == "proposal_made" and p["strategy"] != "sobol":
            total = (p.get("diagnostics") or {}).get("time_total_s")
            if total is not None:
                totals.append(float(total))
        elif kind == "trial_abandoned" and p["reason"].startswith("withdrawn"):
            withdrawn += 1
    span = (last or 0.0) - (first or 0.0)
    return {
        "idle": round(1 - busy / (DRIVERS * span), 4) if span > 0 else None,
        "span_s": round(span, 1),
        "model_proposals": len(totals),
        # the share of the span the proposer was busy: near 1, drivers wait for it whatever
        # the queue, and only cheaper proposals help
        "proposer_busy": round(sum(totals) / span, 3) if span > 0 else None,
        "median_proposal_s": round(statistics.median(totals), 2) if totals else None,
        "max_proposal_s": round(max(totals), 2) if totals else None,
        "withdrawn": withdrawn,
        "best": round(best, 5),
        "log10_regret": round(math.log10(max(best - OPTIMUM, 1e-12)), 3),
    }


def run_group(trials: int, latency: float, aheads: list[int], seed: int, together: bool) -> None:
    procs = []
    for k in aheads:
        tmp = Path(tempfile.mkdtemp(prefix=f"ahead-{k}-"))
        proc, db = start(tmp, campaign(trials, latency, k, seed))
        procs.append((k, proc, db, tmp, time.monotonic()))
        if not together:
            proc.wait()
    for k, proc, db, tmp, t0 in procs:
        proc.wait()
        out: dict[str, Any] = {"latency": latency, "ahead": k, "seed": seed, "trials": trials}
        out |= {"exit": proc.returncode, "wall_s": round(time.monotonic() - t0, 1)}
        out |= measure(db)
        out["dir"] = str(tmp)
        print(json.dumps(out), flush=True)


def summarize(paths: list[str]) -> str:
    """Markdown tables of runs printed by this script: idle per latency, regret per seed."""
    runs = [json.loads(line) for p in paths for line in Path(p).read_text().splitlines()]
    runs = [r for r in runs if line_ok(r)]
    for r in runs:  # figures added to measure() since the run: from its database
        db = Path(r.get("dir", "")) / "c.db"
        if "proposer_busy" not in r and db.exists():
            r["proposer_busy"] = measure(db)["proposer_busy"]
    lines = [
        "| latency | trials | ahead | idle | span s | model proposals | median / max proposal s "
        "| proposer busy | withdrawn | log10 regret |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    groups: dict[tuple[float, int, int], list[dict[str, Any]]] = {}
    for r in runs:
        groups.setdefault((r["latency"], r["trials"], r["ahead"]), []).append(r)
    for (latency, trials, ahead), rs in sorted(groups.items()):
        med = statistics.median
        lines.append(
            f"| {latency:g} s | {trials} | {ahead} | "
            f"{100 * med(r['idle'] for r in rs):.1f} % | {med(r['span_s'] for r in rs):.0f} | "
            f"{med(r['model_proposals'] for r in rs):g} | "
            f"{med(r['median_proposal_s'] for r in rs):.2f} / "
            f"{max(r['max_proposal_s'] for r in rs):.2f} | "
            f"{busy(rs)} | {sum(r['withdrawn'] for r in rs)} | "
            f"{med(r['log10_regret'] for r in rs):.2f} |"
            + (f" (median of {len(rs)} seeds)" if len(rs) > 1 else "")
        )
    seeds = sorted({r["seed"] for r in runs})
    if len(seeds) > 1:  # the paired runs, seed by seed
        aheads = sorted({r["ahead"] for r in runs})
        by = {(r["seed"], r["ahead"]): r for r in runs}
        head = " | ".join(f"ahead {k}: log10 regret, idle" for k in aheads)
        lines += ["", f"| seed | {head} |", "| --- |" + " --- |" * len(aheads)]
        for seed in seeds:
            cells = [
                f"{by[seed, k]['log10_regret']:.2f}, {100 * by[seed, k]['idle']:.1f} %"
                if (seed, k) in by
                else "-"
                for k in aheads
            ]
            lines.append(f"| {seed} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def busy(rs: list[dict[str, Any]]) -> str:
    got = [r["proposer_busy"] for r in rs if r.get("proposer_busy") is not None]
    return f"{100 * statistics.median(got):.0f} %" if got else "-"


def line_ok(r: dict[str, Any]) -> bool:
    return r.get("exit") == 0 and r.get("idle") is not None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--summarize", nargs="+", metavar="JSONL", help="print tables and stop")
    ap.add_argument("--latency", type=float, action="append", default=[])
    ap.add_argument("--ahead", type=int, action="append", default=[], help="0: off")
    ap.add_argument("--trials", type=int, default=300)
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--seed0", type=int, default=1)
    ap.add_argument("--serial", action="store_true", help="one run after the other")
    args = ap.parse_args()
    if args.summarize:
        print(summarize(args.summarize))
        return
    for seed in range(args.seed0, args.seed0 + args.seeds):
        for latency in args.latency or [0.05, 1.0, 10.0]:
            run_group(args.trials, latency, args.ahead or [0], seed, not args.serial)


if __name__ == "__main__":
    main()
