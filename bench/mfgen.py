"""Several fidelities against one on generated problems: what it costs to find the optimum.

Three families, each a target level and one cheap level that is biased:

- ``branin``: BoTorch's AugmentedBranin (2-d), the target at fidelity s = 1, the cheap
  level at s = 0.5 (its minimiser has a target regret of about 0.26; correlation of the
  levels over the box 0.91, but near 0 among the best 1 %);
- ``hartmann``: BoTorch's AugmentedHartmann (6-d), target s = 1, cheap level s = 0 (the
  first bump's weight lower by 0.1: nearly the same landscape);
- ``shifted``: one of our own, drawn anew for every seed: the target a sum of five
  Gaussian bumps in [0, 1]^3 (random centres, widths and weights), the cheap level
  ``a * f(x) + b + bias(x) + noise`` with ``a`` in U(0.5, 1.5), ``b`` in N(0, 1),
  ``bias`` a sum of three random low-frequency cosines of amplitude U(0.1, 0.5) times the
  target's spread over the box, and noise of 1 % of that spread.

The objective is minimised. For every seed two campaigns run through the Python API
(``Campaign.ask/tell``, in memory), one trial at a time, up to ``--max-cost``:

- ``multi``: ``fidelities`` with the cheap level at cost 1 and the target at
  ``--ratio`` (10 by default): loopctl's multi-task GP and its cost-aware acquisition;
- ``single``: the same campaign without fidelities: every trial at the target level
  (cost ``--ratio``), loopctl's default for one continuous objective (GP + log-noisy EI).

Regret is that of the best point measured AT THE TARGET LEVEL (what ``Campaign.best()``
reports); cheap measurements count only through where they lead. Reported per family:
the cost spent until the regret falls below the family's threshold (a run that never gets
there counts as ``--max-cost``), and the regret at ``--max-cost``; medians and quartiles
over the seeds, and the median over seeds of multi's cost / single's (same seed). Every
finished run is appended to ``OUT/runs.jsonl`` (a rerun skips those done).

    OPENBLAS_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE LOOPCTL_TORCH_THREADS=1 \\
        python bench/mfgen.py --problem branin --seeds 20 --out /tmp/mfgen
    python bench/mfgen.py --problem branin --out /tmp/mfgen --summary
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

Levels = Callable[[np.ndarray, str, np.random.Generator], float]


@dataclass
class Problem:
    name: str
    lows: list[float]
    highs: list[float]
    evaluate: Levels  # (x, level "low" | "high", noise rng) -> value, minimised
    optimum: float  # the target level's minimum
    threshold: float  # target regret counted as "found"
    max_cost: float  # default budget, in cheap-level units at --ratio 10


def _augmented(kind: str) -> tuple[Any, float]:
    from botorch.test_functions.multi_fidelity import AugmentedBranin, AugmentedHartmann

    if kind == "branin":
        return AugmentedBranin(), 0.5
    return AugmentedHartmann(), 0.0


def botorch_problem(kind: str) -> Problem:
    import torch

    f, s_low = _augmented(kind)
    d = f.dim - 1
    bounds = f.bounds[:, :d].tolist()

    def evaluate(x: np.ndarray, level: str, rng: np.random.Generator) -> float:
        s = 1.0 if level == "high" else s_low
        z = torch.tensor([[*x.tolist(), s]], dtype=torch.float64)
        return float(f.evaluate_true(z))

    optimum = float(f.optimal_value)
    if kind == "branin":
        return Problem("branin", bounds[0], bounds[1], evaluate, optimum, 0.05, 300)
    return Problem("hartmann", bounds[0], bounds[1], evaluate, optimum, 0.1, 600)


def shifted_problem(seed: int) -> Problem:
    """Seed ``seed``'s instance of the ``shifted`` family (drawn, not chosen)."""
    from scipy.optimize import minimize

    rng = np.random.default_rng(10_000 + seed)
    d, k = 3, 5
    centres = rng.uniform(0, 1, (k, d))
    widths = rng.uniform(0.1, 0.3, k)
    weights = rng.uniform(0.5, 1.5, k)

    def target(x: np.ndarray) -> float:
        r2 = ((x[None, :] - centres) ** 2).sum(1)
        return float(-(weights * np.exp(-r2 / (2 * widths**2))).sum())

    sample = np.random.default_rng(seed).uniform(0, 1, (4096, d))
    values = np.array([target(x) for x in sample])
    spread = float(values.std())
    a = rng.uniform(0.5, 1.5)
    b = rng.normal(0, 1)
    amp = rng.uniform(0.1, 0.5) * spread
    freq = rng.normal(0, 1, (3, d))
    phase = rng.uniform(0, 2 * math.pi, 3)
    noise = 0.01 * spread

    def evaluate(x: np.ndarray, level: str, noise_rng: np.random.Generator) -> float:
        f = target(x)
        if level == "high":
            return f
        bias = amp * float(np.cos(2 * math.pi * (freq @ x) + phase).sum()) / 3
        return a * f + b + bias + float(noise_rng.normal(0, noise))

    starts = [*sample[np.argsort(values)[:5]], *centres]
    best = min(minimize(target, s, bounds=[(0, 1)] * d, method="L-BFGS-B").fun for s in starts)
    median_regret = float(np.median(values)) - float(best)
    return Problem(
        "shifted", [0.0] * d, [1.0] * d, evaluate, float(best), 0.01 * median_regret, 300
    )


def problem(kind: str, seed: int) -> Problem:
    return shifted_problem(seed) if kind == "shifted" else botorch_problem(kind)


def spec(p: Problem, seed: int, multi: bool, ratio: float, max_cost: float) -> dict[str, Any]:
    s: dict[str, Any] = {
        "name": f"mf-{p.name}",
        "seed": seed,
        "space": [
            {"name": f"x{i}", "type": "range", "bounds": [lo, hi]}
            for i, (lo, hi) in enumerate(zip(p.lows, p.highs, strict=True))
        ],
        "objectives": [{"name": "y", "goal": "minimize"}],
        "budget": {"trials": 10_000},
    }
    if multi:
        s["fidelities"] = {
            "levels": [{"name": "low", "cost": 1}, {"name": "high", "cost": ratio}],
            "target": "high",
        }
        s["budget"]["cost"] = max_cost
    else:
        s["budget"]["trials"] = int(max_cost // ratio)
    return s


def run(kind: str, seed: int, multi: bool, ratio: float, max_cost: float) -> dict[str, Any]:
    os.environ.setdefault("LOOPCTL_TORCH_THREADS", "1")
    from loopctl import Campaign

    p = problem(kind, seed)
    noise_rng = np.random.default_rng(seed)
    best = math.inf
    spent = 0.0
    reached: float | None = None
    trace: list[tuple[float, float]] = []  # (cost spent, target regret) after each target trial
    levels = {"low": 0, "high": 0}
    t0 = time.perf_counter()
    corr: list[float | None] = []
    with Campaign.create(spec(p, seed, multi, ratio, max_cost)) as c:
        while spent < max_cost:
            got = c.ask(1)
            if not got:
                break
            t = got[0]
            level = t.fidelity or "high"
            x = np.array([float(t.parameters[f"x{i}"]) for i in range(len(p.lows))])
            y = p.evaluate(x, level, noise_rng)
            c.tell(t.id, {"y": y})
            spent += ratio if level == "high" else 1.0
            levels[level] += 1
            if level == "high" and y < best:
                best = y
                trace.append((spent, best - p.optimum))
                if reached is None and best - p.optimum <= p.threshold:
                    reached = spent
        if multi:
            corr = _correlations(c)
    return {
        "problem": kind,
        "seed": seed,
        "method": "multi" if multi else "single",
        "ratio": ratio,
        "max_cost": max_cost,
        "threshold": p.threshold,
        "reached": reached,
        "final_regret": best - p.optimum,
        "spent": spent,
        "levels": levels,
        "trace": trace,
        "correlation": corr,
        "seconds": time.perf_counter() - t0,
    }


def _correlations(c: Any) -> list[float | None]:
    """The learned correlation of the cheap level with the target at each model proposal."""
    from loopctl.strategies import multitask

    out: list[float | None] = []
    rows = c.store.conn.execute("SELECT diagnostics FROM proposals ORDER BY number").fetchall()
    for (payload,) in rows:
        diag = json.loads(payload)
        cov = diag.get("task_covariance")
        if cov is not None:
            r = multitask.correlations(cov)
            out.append(None if r is None else r[1])
    return out


def _q(values: list[float], fmt: str = "{:.0f}") -> str:
    q = statistics.quantiles(values, n=4) if len(values) > 1 else [values[0]] * 3
    return f"{fmt.format(statistics.median(values))} [{fmt.format(q[0])}-{fmt.format(q[2])}]"


def summary(rows: list[dict[str, Any]], kind: str, ratio: float) -> None:
    rows = [r for r in rows if r["problem"] == kind and r["ratio"] == ratio]
    by = {(r["seed"], r["method"]): r for r in rows}
    seeds = sorted({s for s, m in by if (s, "multi") in by and (s, "single") in by})
    if not seeds:
        print(f"{kind} 1:{ratio:g}: no seed has both methods finished")
        return
    max_cost = by[(seeds[0], "multi")]["max_cost"]
    print(
        f"{kind}, cost 1:{ratio:g}, max cost {max_cost:g}, {len(seeds)} seeds "
        f"(threshold {by[(seeds[0], 'multi')]['threshold']:.3g} for seed {seeds[0]}):"
    )
    for m in ("multi", "single"):
        rs = [by[(s, m)] for s in seeds]
        cost = [r["reached"] if r["reached"] is not None else max_cost for r in rs]
        hit = sum(r["reached"] is not None for r in rs)
        regret = [max(r["final_regret"], 1e-12) for r in rs]
        low = _q([r["levels"]["low"] for r in rs])
        print(
            f"  {m:6s} cost to threshold {_q(cost)}  reached {hit}/{len(rs)}  "
            f"final regret {_q(regret, '{:.3g}')}  trials low {low}"
            f" high {_q([r['levels']['high'] for r in rs])}  "
            f"{statistics.median(r['seconds'] for r in rs):.0f} s"
        )
    ratios = [
        (by[(s, "multi")]["reached"] or max_cost) / (by[(s, "single")]["reached"] or max_cost)
        for s in seeds
    ]
    corr = [c for s in seeds for c in by[(s, "multi")]["correlation"][-1:] if c is not None]
    print(
        f"  median ratio multi/single of cost to threshold (same seed): "
        f"{statistics.median(ratios):.2f}; final learned correlation "
        f"{_q(corr, '{:.2f}') if corr else '-'}"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--problem", choices=("branin", "hartmann", "shifted"), default="branin")
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--ratio", type=float, default=10.0, help="target cost / cheap cost")
    ap.add_argument("--max-cost", type=float, help="budget (default: the family's, x ratio/10)")
    ap.add_argument("--methods", default="multi,single")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--summary", action="store_true", help="only print what has finished")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    log = args.out / "runs.jsonl"
    done = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    if not args.summary:
        max_cost = args.max_cost or problem(args.problem, 0).max_cost * args.ratio / 10
        have = {(r["problem"], r["seed"], r["method"], r["ratio"]) for r in done}
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            for method in args.methods.split(","):
                if (args.problem, seed, method, args.ratio) in have:
                    continue
                r = run(args.problem, seed, method == "multi", args.ratio, max_cost)
                with log.open("a") as f:
                    f.write(json.dumps(r) + "\n")
                done.append(r)
                print(
                    f"{args.problem} seed {seed} {method}: reached {r['reached']} "
                    f"final regret {r['final_regret']:.3g} {r['levels']} "
                    f"corr {r['correlation'][-1:]} {r['seconds']:.0f} s",
                    flush=True,
                )
    summary(done, args.problem, args.ratio)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
