"""Optimisation benchmark: loopctl's strategies against Ax's Client and Sobol, side by side.

    .venv/bin/python bench/regret.py --problems branin,hartmann6 --methods loopctl,ax,sobol \\
        --seeds 10 --batch 1,4 --workers 2 --out bench/regret.json --markdown bench/RESULTS.md

Every (problem, method, batch, seed) run is independent; records are appended to
the JSON as they finish, ``--resume`` skips runs already there, and ``--merge``
combines files and rewrites the markdown (a later file's run replaces an earlier
one's of the same problem, method, batch and seed). loopctl methods go through
``Campaign.ask/tell`` in memory; ``ax`` drives Ax's own Client (default generation
strategy) directly. Problems are in bench/problems.py.

Methods: ``loopctl`` (the default, ``auto``), ``sobol``, ``ax``, ``loopctl-<method>``
for any strategy method (``loopctl-nsga2``, ``loopctl-ax``, ...), and
``loopctl-nofail`` (``auto`` with ``learn_failures: false``, run on failure problems
only); ``loopctl-nsga2`` runs on the multi-objective problems only. ``--budget``
sets the trials per run for every problem; by default each has its own (bench/problems.py).
On the two-objective problems both tools are given the reference point the hypervolume is
scored against, as objective thresholds.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("LOOPCTL_TORCH_THREADS", "1")  # the workers share the cores

import argparse
import json
import logging
import math
import multiprocessing as mp
import statistics
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from problems import Problem, hypervolume, problems

CHECKPOINTS = (0.25, 0.5, 0.75, 1.0)


# ---------------------------------------------------------------------- one run


def _spec(p: Problem, method: str, seed: int) -> dict[str, Any]:
    strategy: dict[str, Any] = {"method": "auto"}
    if method == "sobol":
        strategy = {"method": "sobol"}
    elif method == "loopctl-nofail":
        strategy = {"method": "auto", "options": {"learn_failures": False}}
    elif method.startswith("loopctl-"):
        strategy = {"method": method.removeprefix("loopctl-")}
    spec: dict[str, Any] = {
        "name": p.name,
        "seed": seed,
        "space": p.space,
        "objectives": p.objectives,
        "budget": {"trials": p.budget},
        "strategy": strategy,
    }
    if p.pool:
        spec["pool"] = p.pool
    return spec


def _run_loopctl(p: Problem, method: str, batch: int, seed: int) -> dict[str, Any]:
    from loopctl import Campaign

    c = Campaign.create(_spec(p, method, seed))
    ys: list[dict[str, float]] = []
    times: list[float] = []
    failed = asked = 0
    while len(ys) < p.budget and asked < 3 * p.budget:
        t = time.perf_counter()
        trials = c.ask(min(batch, p.budget - len(ys)))
        times.append(time.perf_counter() - t)
        if not trials:
            break
        for tr in trials:
            asked += 1
            if p.fails and p.fails(tr.parameters):
                c.fail(tr.id, "did not form a film", retryable=False)
                failed += 1
                continue
            out = p.evaluate(tr.parameters)
            c.tell(tr.id, out)
            ys.append(out)
    strategies = sorted({pr["strategy"] for pr in c.store.proposals()})
    c.close()
    return {"outcomes": ys, "times": times, "failed": failed, "strategies": strategies}


def _run_ax(p: Problem, batch: int, seed: int) -> dict[str, Any]:
    from ax import Client

    from loopctl.spec import parse_spec
    from loopctl.strategies.ax_backend import _AxNames

    for name in list(logging.root.manager.loggerDict):
        if name == "ax" or name.startswith("ax."):
            logging.getLogger(name).setLevel(logging.WARNING)
    spec = parse_spec(_spec(p, "sobol", seed))
    names = _AxNames(spec)  # the same parameter translation as loopctl's ax backend
    client = Client(random_seed=seed)
    client.configure_experiment(
        parameters=names.parameters(), parameter_constraints=names.constraints()
    )
    client.configure_optimization(
        objective=names.objective(), outcome_constraints=names.outcome_constraints()
    )
    ys: list[dict[str, float]] = []
    times: list[float] = []
    failed = asked = 0
    while len(ys) < p.budget and asked < 3 * p.budget:
        t = time.perf_counter()
        trials = client.get_next_trials(max_trials=min(batch, p.budget - len(ys)))
        times.append(time.perf_counter() - t)
        for idx, params in trials.items():
            asked += 1
            x = names.from_ax(params)
            if p.fails and p.fails(x):
                client.mark_trial_failed(idx)
                failed += 1
                continue
            out = p.evaluate(x)
            client.complete_trial(idx, raw_data={names.metric[k]: v for k, v in out.items()})
            ys.append(out)
    return {"outcomes": ys, "times": times, "failed": failed, "strategies": ["ax-client"]}


def run_one(job: tuple[str, str, int, int, int | None]) -> dict[str, Any]:
    problem, method, batch, seed, budget = job
    from loopctl.strategies import fused_kernel, surrogate

    surrogate.set_threads(0)  # LOOPCTL_TORCH_THREADS=1 for Ax's runs too: the workers share
    fused_kernel.no_jit()  # Ax and loopctl alike: the kernel make install built, never a JIT build
    warnings.simplefilter("ignore")
    p = problems()[problem]
    if budget is not None:
        p.budget = budget
    record: dict[str, Any] = {
        "problem": problem,
        "method": method,
        "batch": batch,
        "seed": seed,
        "budget": p.budget,
    }
    t0 = time.perf_counter()
    try:
        if method == "ax":
            if p.pool:
                return record | {"error": "n/a: Ax's Client cannot restrict itself to a pool"}
            r = _run_ax(p, batch, seed)
        else:
            r = _run_loopctl(p, method, batch, seed)
    except Exception as exc:  # recorded and reported, never fatal for the whole benchmark
        return record | {
            "error": f"{type(exc).__name__}: {exc}",
            "trace": traceback.format_exc()[-2000:],
        }
    return record | r | {"wall_s": time.perf_counter() - t0}


# ---------------------------------------------------------------------- metrics


def _trace(p: Problem, outcomes: list[dict[str, float]], optimum: float | None) -> list[float]:
    """Per completed trial: simple regret (single), relative HV gap (multi), Top% (pool)."""
    out: list[float] = []
    if p.kind in ("single", "fail"):
        best = math.inf
        for o in outcomes:
            best = min(best, o["y"])
            out.append(best - (optimum if optimum is not None else 0.0))
    elif p.kind == "multi":
        pts = np.array([[o["a"], o["b"]] for o in outcomes])
        for i in range(1, len(pts) + 1):
            out.append(max(0.0, 1.0 - hypervolume(p.name, pts[:i]) / (optimum or 1.0)))
    else:
        sign = 1 if p.objectives[0]["goal"] == "maximize" else -1
        ranked = sorted(p.pool_values.values(), key=lambda v: -sign * v)
        m = math.ceil(0.05 * len(ranked))
        top = ranked[m - 1]
        found = 0
        for o in outcomes:
            found += sign * o["y"] >= sign * top
            out.append(found / m)
    return out


def random_top(n_pool: int, cycles: int) -> list[float]:
    """Liang et al.'s analytic Top% of random sampling without replacement (Eqs. 14-15)."""
    m = math.ceil(0.05 * n_pool)
    return [min(1.0, i * m / n_pool / m) if i else 0.0 for i in range(1, cycles + 1)]


def summarise(records: list[dict[str, Any]]) -> dict[str, Any]:
    probs = problems()
    # EMT's optimum is unknown: the best value any run found
    emt = [
        o["y"]
        for r in records
        if r["problem"] == "emt_alloy" and "outcomes" in r
        for o in r["outcomes"]
    ]
    if emt:
        probs["emt_alloy"].optimum = min(emt) - 1e-6
    table: dict[tuple[str, str, int], dict[str, Any]] = {}
    groups: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for r in records:
        groups.setdefault((r["problem"], r["method"], r["batch"]), []).append(r)
    for key, rs in sorted(groups.items()):
        p = probs[key[0]]
        ok = [r for r in rs if "outcomes" in r]
        row: dict[str, Any] = {
            "runs": len(rs),
            "errors": [r["error"][:120] for r in rs if "error" in r][:1],
        }
        if not ok:
            table[key] = row
            continue
        traces = [_trace(p, r["outcomes"], p.optimum) for r in ok]
        n = min(len(t) for t in traces)
        row["trials"] = n
        row["strategies"] = sorted({s for r in ok for s in r["strategies"]})
        row["time_per_proposal_s"] = statistics.median(
            t for r in ok for t in r["times"][1:] or r["times"]
        )
        row["failed"] = statistics.median(r["failed"] for r in ok)
        if p.kind == "pool":
            finals = [t[n - 1] for t in traces]
            rnd = random_top(len(p.pool_values), n)
            med = [statistics.median(t[i] for t in traces) for i in range(n)]
            row["final"] = _quartiles(finals)
            row["along"] = {
                f"{int(c * 100)}%": _quartiles([t[int(c * n) - 1] for t in traces])
                for c in CHECKPOINTS
            }
            row["ef_max"] = max(med[i] / rnd[i] for i in range(n) if rnd[i] > 0)
            row["af"] = {}
            for a in (0.5, 0.8):
                i_m = next((i + 1 for i, v in enumerate(med) if v >= a), None)
                i_r = _random_cycles(len(p.pool_values), a)
                row["af"][str(a)] = (i_r / i_m) if i_m else None
                row.setdefault("cycles_to", {})[str(a)] = i_m
        else:
            logs = [[math.log10(max(v, 1e-6)) for v in t] for t in traces]
            row["final"] = _quartiles([lg[n - 1] for lg in logs])
            row["along"] = {
                f"{int(c * 100)}%": _quartiles([lg[max(0, int(c * n) - 1)] for lg in logs])
                for c in CHECKPOINTS
            }
            reach = [next((i + 1 for i, v in enumerate(t) if v <= p.target), None) for t in traces]
            hit = [x for x in reach if x is not None]
            row["to_target"] = {
                "target": p.target,
                "median": statistics.median(hit) if hit else None,
                "not_reached": len(reach) - len(hit),
            }
        table[key] = row
    return {
        "rows": [{"problem": k[0], "method": k[1], "batch": k[2], **v} for k, v in table.items()]
    }


def _random_cycles(n_pool: int, a: float) -> int:
    m = math.ceil(0.05 * n_pool)
    return math.ceil(a * m * n_pool / m)


def _quartiles(values: list[float]) -> list[float]:
    q = np.percentile(values, [25, 50, 75])
    return [float(q[0]), float(q[1]), float(q[2])]


# ---------------------------------------------------------------------- markdown


def markdown(summary: dict[str, Any], commands: list[str]) -> str:
    rows = summary["rows"]
    seeds = max((r["runs"] for r in rows), default=0)
    short = sorted({f"{r['method']} q={r['batch']}" for r in rows if r["runs"] < seeds})
    lines = [
        "# Optimisation benchmark",
        "",
        "Commands (in the order run; a later command's run of the same problem, method, batch"
        " and seed replaces an earlier one's):",
        "",
        *(f"    {c}" for c in commands),
        "",
        f"Machine: 2 cores, no GPU; workers run one thread each. Seeds per cell: up to {seeds}.",
        "Single objective: log10 simple regret (EMT: against the best value any run found).",
        "Two objectives: log10 of the relative hypervolume gap to the true front. Pools (Liang",
        "et al. 2021): Top% = share of the top-5 % candidates found; EF max = max over cycles of",
        "median Top% / random Top%; AF(a) = cycles random needs / cycles the method needs to reach",
        "Top% = a (analytic random baseline). Cells: median [25th, 75th percentile] over seeds.",
        "Time: median seconds per proposal (ask / get_next_trials), first proposal excluded.",
        "",
    ]
    if short:
        lines += [f"Fewer than {seeds} seeds (see `runs`): {', '.join(short)}.", ""]
    by_problem: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_problem.setdefault(r["problem"], []).append(r)
    pool_head = ["method", "batch", "runs", "Top% end", "Top% at 25/50/75 % of budget"]
    pool_head += ["EF max", "AF(0.5)", "AF(0.8)", "s/proposal"]
    head = ["method", "batch", "runs", "final log10", "along 25/50/75 %"]
    head += ["trials to target (not reached)", "failed", "s/proposal", "vs ax: final, time"]
    for prob, rs in by_problem.items():
        pool = any("ef_max" in r for r in rs)
        cols = pool_head if pool else head
        lines += [f"## {prob}", "", _cells(cols), _cells(["---"] * len(cols))]
        for r in rs:
            first = [r["method"], str(r["batch"]), str(r["runs"])]
            if "final" not in r:
                lines.append(_cells([*first, "; ".join(r["errors"]) or "no result"]))
                continue
            q = r["final"]
            final = f"{q[1]:.2f} [{q[0]:.2f}, {q[2]:.2f}]"
            along = " / ".join(f"{r['along'][k][1]:.2f}" for k in ("25%", "50%", "75%"))
            t = f"{r['time_per_proposal_s']:.2f}"
            if pool:
                af = [_f(r["af"][a]) for a in ("0.5", "0.8")]
                lines.append(_cells([*first, final, along, f"{r['ef_max']:.2f}", *af, t]))
                continue
            ax = next(
                (
                    x
                    for x in rs
                    if x["method"] == "ax" and x["batch"] == r["batch"] and "final" in x
                ),
                None,
            )
            vs = ""
            if ax is not None and r["method"] != "ax":
                ratio = r["time_per_proposal_s"] / max(ax["time_per_proposal_s"], 1e-9)
                vs = f"{q[1] - ax['final'][1]:+.2f}, {ratio:.2f}x"
            tt = r["to_target"]
            target = f"{_f(tt['median'])} ({tt['not_reached']}) ≤{tt['target']:g}"
            lines.append(_cells([*first, final, along, target, f"{r['failed']:g}", t, vs]))
        lines.append("")
    return "\n".join(lines) + "\n"


def _cells(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _f(v: float | None) -> str:
    return "—" if v is None else f"{v:.2f}" if isinstance(v, float) else str(v)


# ---------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--problems",
        default="branin,hartmann6,ackley6,emt_alloy,branincurrin,dtlz2,mixed_mo,liang_p3ht,liang_perovskite,branin_fail",
    )
    ap.add_argument("--methods", default="loopctl,ax,sobol")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--batch", default="1,4")
    ap.add_argument(
        "--budget", type=int, default=None, help="trials per run (default: each problem's own)"
    )
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", default="bench/regret.json")
    ap.add_argument("--markdown", default=None)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--merge", nargs="*", default=None, help="combine these JSON files into --out")
    args = ap.parse_args()
    out = Path(args.out)
    command = "bench/regret.py " + " ".join(sys.argv[1:])
    # the commands that produced the records, kept with them through --resume and --merge
    commands: list[str] = []
    if args.merge is not None:
        # a later file's run replaces an earlier file's run of the same cell and seed
        merged: dict[tuple[str, str, int, int], dict[str, Any]] = {}
        for f in args.merge:
            got = json.loads(Path(f).read_text())
            merged |= {
                (r["problem"], r["method"], r["batch"], r["seed"]): r for r in got["records"]
            }
            commands += got.get("commands", [])
        records = list(merged.values())
    else:
        records = []
        if args.resume and out.exists():
            got = json.loads(out.read_text())
            records, commands = got["records"], got.get("commands", [])
        commands.append(command)
        done = {(r["problem"], r["method"], r["batch"], r["seed"]) for r in records}
        jobs = [
            (p, m, int(b), s, args.budget)
            for s in range(args.seeds)
            for p in args.problems.split(",")
            for m in args.methods.split(",")
            for b in args.batch.split(",")
            if (p, m, int(b), s) not in done
            and not (m == "loopctl-nofail" and problems()[p].kind != "fail")
            and not (m == "loopctl-nsga2" and problems()[p].kind != "multi")
        ]
        print(f"{len(jobs)} runs on {args.workers} workers", flush=True)
        t0 = time.time()
        with mp.get_context("spawn").Pool(args.workers) as pool:
            for i, r in enumerate(pool.imap_unordered(run_one, jobs), 1):
                records.append(r)
                out.write_text(json.dumps({"records": records, "commands": commands}))
                state = r.get(
                    "error", f"{len(r.get('outcomes', []))} trials, {r.get('wall_s', 0):.0f} s"
                )
                where = f"{r['problem']} {r['method']} q={r['batch']} seed={r['seed']}"
                print(
                    f"[{i}/{len(jobs)} {time.time() - t0:.0f}s] {where}: {state}",
                    flush=True,
                )
    summary = summarise(records)
    out.write_text(json.dumps({"records": records, "commands": commands, "summary": summary}))
    if args.markdown:
        Path(args.markdown).write_text(markdown(summary, commands or [command]))
        print(f"wrote {args.markdown}")


if __name__ == "__main__":
    main()
