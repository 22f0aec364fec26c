"""Seconds per evaluation of the CHGNet oracle on a shipped campaign's settings.

Builds the oracle from the campaign file as a driver would (one process, one torch thread
unless LOOPCTL_TORCH_THREADS says otherwise), then times the evaluation of N compositions
drawn uniformly from the simplex with a fixed seed (or, for a campaign over a pool of
formulas such as oxide-chgnet.yaml or of structure files such as structure-chgnet.yaml, of
its first N rows). Prints one line per composition and a
JSON summary: the model load and references (paid once per driver process, by its first
trial), the median and range of seconds per evaluation, the relaxation steps, and the
machine's load average, since on a shared machine the figure means little without it.

    python bench/chgnet_cost.py [--campaign campaigns/alloy-chgnet.yaml] [-n 10]
    python bench/chgnet_cost.py --campaign campaigns/oxide-chgnet.yaml
    python bench/chgnet_cost.py --campaign campaigns/structure-chgnet.yaml
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy, as in a driver process
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from loopctl.drivers.oracle_models import build_oracle
from loopctl.spec import load_spec

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--campaign", default=str(ROOT / "campaigns" / "alloy-chgnet.yaml"))
    ap.add_argument("-n", type=int, default=10, help="compositions to evaluate (default 10)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    spec = yaml.safe_load(Path(args.campaign).read_text())
    formula = next((p for p in spec["space"] if p["type"] == "formula"), None)
    files = any(p["type"] == "structure" for p in spec["space"])
    options = dict(spec["oracle"].get("options") or {})
    if files:  # the rows' formulas come from their files, paths from the campaign's folder
        options["base_dir"] = str(Path(args.campaign).resolve().parent)
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    oracle = build_oracle(
        "chgnet",
        objectives=[o["name"] for o in spec["objectives"]],
        parameters=spec["space"],
        options=options,
    )
    candidates: list[dict[str, Any]]
    if formula is None:
        comp = next(p for p in spec["space"] if p["type"] == "composition")
        # the first trial waits for the model and the references: pay that apart, on a
        # pure element (its cell is the reference's, so it relaxes in no step)
        oracle({comp["name"]: {comp["elements"][0]: 1.0}})
        rng = np.random.default_rng(args.seed)
        candidates = [
            {comp["name"]: dict(zip(comp["elements"], map(float, x), strict=True))}
            for x in rng.dirichlet(np.ones(len(comp["elements"])), size=args.n)
        ]
    elif files:
        # the first row pays the model and the references (and its own relaxation, once)
        pool = load_spec(args.campaign).pool
        assert pool is not None  # a structure parameter needs one
        candidates = [dict(r) for r in pool.rows[: args.n]]
        oracle(candidates[0])
    else:
        # a pool: its first n rows, in order; the model and the hull compounds are paid
        # apart, by the first hull compound's own evaluation (it is one of them: no steps)
        hull = list((spec["oracle"].get("options") or {}).get("hull_formulas") or [])
        oracle({formula["name"]: hull[0] if hull else "MgO"})
        candidates = [dict(r) for r in spec["pool"]["rows"][: args.n]]
    setup = time.perf_counter() - t0
    times, steps, converged = [], [], 0
    for candidate in candidates:
        t = time.perf_counter()
        out = oracle(candidate)
        times.append(time.perf_counter() - t)
        meta = getattr(out, "metadata", {})
        steps.append(int(meta["relax_steps"]))
        converged += bool(meta["converged"])
        print(
            f"{meta['simulated_cell']:>24} {meta.get('prototype', ''):>10} {times[-1]:6.1f} s  "
            f"{meta['relax_steps']:>3} steps  "
            f"{dict(out)}",
            flush=True,
        )
    summary = {
        "campaign": Path(args.campaign).name,
        "options": spec["oracle"].get("options"),
        "setup_s": round(setup, 1),
        "evaluations": len(candidates),
        "median_s": round(statistics.median(times), 1),
        "min_s": round(min(times), 1),
        "max_s": round(max(times), 1),
        "median_steps": statistics.median(steps),
        "converged": f"{converged}/{len(candidates)}",
        "median_s_per_step": round(
            statistics.median(t / max(s, 1) for t, s in zip(times, steps, strict=True)), 2
        ),
        "load_average_before": [round(v, 2) for v in load_before],
        "load_average_after": [round(v, 2) for v in os.getloadavg()],
        "cpus": os.cpu_count(),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
