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

A loopctl method may carry options after a colon, ``key=value`` separated by commas
(``--methods loopctl,ax,loopctl:warp_outcomes=false,initial=5`` is three methods: a
comma-separated part with ``=`` and no ``:`` continues the method before it):

- any strategy option of loopctl/spec.py's STRATEGY_OPTIONS (``warp_outcomes=false``,
  ``winsorize=true``, ``center_point=false``, ``acquisition=ucb``, ``beta=4``, ...), and
  ``initial=N`` for ``initial_trials``; these go into the campaign spec;
- bench-only knobs of the acquisition's search, to measure Ax's settings without changing
  loopctl: ``restarts=N``, ``raw_samples=N`` (per pick), ``maxiter=N`` (L-BFGS-B iterations),
  ``mc_samples=N`` (qLogNEI's QMC samples), ``lambda_min=N`` (the outcome warp's smallest
  lambda). They are set on loopctl's modules in the worker for that run only
  (botorch_gp.MC_SAMPLES, search.MAXITER, the Search's restarts and raw samples,
  warping.LAMBDA_RANGE) and restored after it.

Generated problems (bench/generated.py via bench/problems.py): ``gen-<family>-<index>``,
``gen-<family>`` for the instances of ``--instances`` (default 0-4), ``gen`` for every
family's. Their budget is 10 trials per dimension (``--gen-trials-per-dim`` changes it);
their regret is in the function's own units ((best - optimum) / a) and the markdown pools
each family's instances and seeds into one row per method.
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
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from problems import Problem, generated_names, hypervolume, problem

CHECKPOINTS = (0.25, 0.5, 0.75, 1.0)


# ---------------------------------------------------------------------- methods

# bench-only, see the docstring
KNOBS = ("restarts", "raw_samples", "maxiter", "mc_samples", "lambda_min")


@dataclass
class Method:
    """A ``--methods`` entry: ``loopctl[-<method>][:key=value,...]``, ``ax`` or ``sobol``."""

    base: str
    options: dict[str, Any] = field(default_factory=dict)  # the spec's strategy options
    initial: int | None = None  # the spec's initial_trials
    knobs: dict[str, int] = field(default_factory=dict)


def split_methods(text: str) -> list[str]:
    """Split ``--methods`` on commas; a part with ``=`` and no ``:`` continues the one before."""
    out: list[str] = []
    for part in text.split(","):
        if out and "=" in part and ":" not in part:
            out[-1] += "," + part
        else:
            out.append(part)
    return out


def parse_method(method: str) -> Method:
    from loopctl.schema import field_of
    from loopctl.spec import STRATEGY_OPTIONS

    base, _, rest = method.partition(":")
    m = Method(base)
    if base in ("ax", "sobol") or not base.startswith("loopctl"):
        if rest or base not in ("ax", "sobol"):
            raise ValueError(f"{method}: options are for loopctl methods only")
        return m
    for item in filter(None, rest.split(",")):
        key, eq, value = item.partition("=")
        kind = STRATEGY_OPTIONS.get(key)
        if not eq:
            raise ValueError(f"{method}: {item!r} is not key=value")
        if key == "initial":
            m.initial = int(value)
        elif key in KNOBS:
            m.knobs[key] = int(value)
        elif kind is bool:
            if value in field_of("strategy.options", key).choices:  # warp_outcomes=auto
                m.options[key] = value
            elif value.lower() not in ("true", "false"):
                raise ValueError(f"{method}: {key} must be true or false")
            else:
                m.options[key] = value.lower() == "true"
        elif kind is float:
            m.options[key] = float(value)
        elif isinstance(kind, tuple):
            if value not in kind:
                raise ValueError(f"{method}: {key} must be one of {', '.join(kind)}")
            m.options[key] = value
        else:
            known = ", ".join([*STRATEGY_OPTIONS, "initial", *KNOBS])
            raise ValueError(f"{method}: unknown option {key!r} (one of {known})")
    return m


@contextmanager
def _knobs(knobs: dict[str, int]) -> Iterator[None]:
    """The bench-only search knobs, set on loopctl's modules for one run and restored."""
    if not knobs:
        yield
        return
    from loopctl.strategies import botorch_gp, search, warping

    saved = (botorch_gp.MC_SAMPLES, search.MAXITER, botorch_gp.Search)
    saved_range = warping.LAMBDA_RANGE
    if "lambda_min" in knobs:  # the warp's lambda kept at or above this (1: no concave warp)
        warping.LAMBDA_RANGE = (float(knobs["lambda_min"]), warping.LAMBDA_RANGE[1])
    restarts, raw = knobs.get("restarts"), knobs.get("raw_samples")

    class Tuned(search.Search):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.restarts = restarts or self.restarts
            self.raw_samples = raw or self.raw_samples

    botorch_gp.MC_SAMPLES = knobs.get("mc_samples", botorch_gp.MC_SAMPLES)
    search.MAXITER = knobs.get("maxiter", search.MAXITER)
    if restarts or raw:
        botorch_gp.Search = Tuned  # type: ignore[misc]
    try:
        yield
    finally:
        botorch_gp.MC_SAMPLES, search.MAXITER, botorch_gp.Search = saved  # type: ignore[misc]
        warping.LAMBDA_RANGE = saved_range


# ---------------------------------------------------------------------- one run


def _spec(p: Problem, method: str, seed: int) -> dict[str, Any]:
    m = parse_method(method)
    name = "auto" if m.base == "loopctl" else m.base.removeprefix("loopctl-")
    options = dict(m.options)
    if name == "nofail":
        name, options = "auto", {"learn_failures": False} | options
    strategy: dict[str, Any] = {"method": name}
    if options:
        strategy["options"] = options
    if m.initial is not None:
        strategy["initial_trials"] = m.initial
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
    name, method, batch, seed, budget = job
    from loopctl.strategies import fused_kernel, surrogate

    surrogate.set_threads(0)  # LOOPCTL_TORCH_THREADS=1 for Ax's runs too: the workers share
    fused_kernel.no_jit()  # Ax and loopctl alike: the kernel make install built, never a JIT build
    warnings.simplefilter("ignore")
    p = problem(name)
    if budget is not None:
        p.budget = budget
    record: dict[str, Any] = {
        "problem": name,
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
            with _knobs(parse_method(method).knobs):
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
            out.append((best - (optimum if optimum is not None else 0.0)) / p.scale)
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
    """One row per (problem, method, batch); generated instances also pooled per family
    (rows whose ``problem`` is the family, e.g. ``gen-hartmann6``, with their ``instances``)."""
    probs: dict[str, Problem] = {}

    def get(name: str) -> Problem:
        if name not in probs:
            probs[name] = problem(name)
        return probs[name]

    # EMT's optimum is unknown: the best value any run found
    emt = [
        o["y"]
        for r in records
        if r["problem"] == "emt_alloy" and "outcomes" in r
        for o in r["outcomes"]
    ]
    if emt:
        get("emt_alloy").optimum = min(emt) - 1e-6
    groups: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for r in records:
        groups.setdefault((r["problem"], r["method"], r["batch"]), []).append(r)
        family = get(r["problem"]).family
        if family is not None:
            groups.setdefault((family, r["method"], r["batch"]), []).append(r)
    table: dict[tuple[str, str, int], dict[str, Any]] = {}
    for key, rs in sorted(groups.items()):
        table[key] = _row([(get(r["problem"]), r) for r in rs])
        if key[0] not in {r["problem"] for r in rs}:
            table[key]["instances"] = sorted({r["problem"] for r in rs})
    return {
        "rows": [{"problem": k[0], "method": k[1], "batch": k[2], **v} for k, v in table.items()]
    }


def _row(runs: list[tuple[Problem, dict[str, Any]]]) -> dict[str, Any]:
    """The summary of the runs of one cell (each run with its own problem)."""
    row: dict[str, Any] = {
        "runs": len(runs),
        "errors": [r["error"][:120] for _, r in runs if "error" in r][:1],
    }
    ok = [(p, r) for p, r in runs if "outcomes" in r]
    if not ok:
        return row
    p = ok[0][0]
    traces = [_trace(q, r["outcomes"], q.optimum) for q, r in ok]
    n = min(len(t) for t in traces)
    row["trials"] = n
    row["strategies"] = sorted({s for _, r in ok for s in r["strategies"]})
    row["time_per_proposal_s"] = statistics.median(
        t for _, r in ok for t in r["times"][1:] or r["times"]
    )
    row["failed"] = statistics.median(r["failed"] for _, r in ok)
    if p.kind == "pool":
        finals = [t[n - 1] for t in traces]
        rnd = random_top(len(p.pool_values), n)
        med = [statistics.median(t[i] for t in traces) for i in range(n)]
        row["final"] = _quartiles(finals)
        row["along"] = {
            f"{int(c * 100)}%": _quartiles([t[int(c * n) - 1] for t in traces]) for c in CHECKPOINTS
        }
        row["ef_max"] = max(med[i] / rnd[i] for i in range(n) if rnd[i] > 0)
        row["af"] = {}
        for a in (0.5, 0.8):
            i_m = next((i + 1 for i, v in enumerate(med) if v >= a), None)
            i_r = _random_cycles(len(p.pool_values), a)
            row["af"][str(a)] = (i_r / i_m) if i_m else None
            row.setdefault("cycles_to", {})[str(a)] = i_m
        return row
    logs = [[math.log10(max(v, 1e-6)) for v in t] for t in traces]
    row["final"] = _quartiles([lg[n - 1] for lg in logs])
    row["along"] = {
        f"{int(c * 100)}%": _quartiles([lg[max(0, int(c * n) - 1)] for lg in logs])
        for c in CHECKPOINTS
    }
    reach = [
        next((i + 1 for i, v in enumerate(t) if v <= q.target), None)
        for (q, _), t in zip(ok, traces, strict=True)
    ]
    hit = [x for x in reach if x is not None]
    targets = {q.target for q, _ in ok}
    row["to_target"] = {
        "target": p.target if len(targets) == 1 else None,  # None: each instance its own
        "median": statistics.median(hit) if hit else None,
        "not_reached": len(reach) - len(hit),
    }
    return row


def _random_cycles(n_pool: int, a: float) -> int:
    m = math.ceil(0.05 * n_pool)
    return math.ceil(a * m * n_pool / m)


def _quartiles(values: list[float]) -> list[float]:
    q = np.percentile(values, [25, 50, 75])
    return [float(q[0]), float(q[1]), float(q[2])]


# ---------------------------------------------------------------------- markdown


def markdown(summary: dict[str, Any], commands: list[str]) -> str:
    rows = summary["rows"]
    cells = [r for r in rows if "instances" not in r]  # a family's rows pool its instances
    seeds = max((r["runs"] for r in cells), default=0)
    short = sorted({f"{r['method']} q={r['batch']}" for r in cells if r["runs"] < seeds})
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
    generated = [r for r in rows if "instances" in r]
    if generated:
        lines += _generated_summary(rows, generated)
    by_problem: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        if r["problem"].startswith("gen-") and "instances" not in r:
            continue  # an instance: in the summary above, pooled in its family's section
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
            goal = "1 % of typical" if tt["target"] is None else f"{tt['target']:g}"
            target = f"{_f(tt['median'])} ({tt['not_reached']}) ≤{goal}"
            lines.append(_cells([*first, final, along, target, f"{r['failed']:g}", t, vs]))
        lines.append("")
    return "\n".join(lines) + "\n"


def _generated_summary(rows: list[dict[str, Any]], families: list[dict[str, Any]]) -> list[str]:
    """Generated families at a glance: each method's pooled final regret and time against
    Ax's, how many families each method beats Ax on, and the median per instance."""
    lines = [
        "## Generated instances (bench/generated.py)",
        "",
        "Randomly shifted, scaled and permuted test functions (trials: per run, 10 per dimension",
        "unless the command says otherwise); regret in the function's own units, (best -",
        "optimum) / a, pooled over instances and seeds. Per method: final log10 regret median",
        "[25th, 75th percentile], difference of medians to Ax's (negative: better), median",
        "s/proposal and its ratio to Ax's.",
        "",
    ]
    head = ["family", "method", "batch", "runs", "trials", "final log10", "vs ax"]
    head += ["s/proposal", "x ax"]
    lines += [_cells(head), _cells(["---"] * len(head))]
    score: dict[tuple[str, int], list[int]] = {}
    for r in families:
        if "final" not in r:
            lines.append(_cells([r["problem"], r["method"], str(r["batch"]), str(r["runs"])]))
            continue
        ax = next(
            (
                x
                for x in families
                if x["problem"] == r["problem"]
                and x["method"] == "ax"
                and x["batch"] == r["batch"]
                and "final" in x
            ),
            None,
        )
        q, t = r["final"], r["time_per_proposal_s"]
        vs = ratio = ""
        if ax is not None and r["method"] != "ax":
            d = q[1] - ax["final"][1]
            vs, ratio = f"{d:+.2f}", f"{t / max(ax['time_per_proposal_s'], 1e-9):.2f}"
            tally = score.setdefault((r["method"], r["batch"]), [0, 0, 0])
            tally[0 if d < 0 else 1 if d == 0 else 2] += 1
        final = f"{q[1]:.2f} [{q[0]:.2f}, {q[2]:.2f}]"
        cells = [r["problem"], r["method"], str(r["batch"]), str(r["runs"]), str(r["trials"])]
        cells += [final, vs]
        lines.append(_cells([*cells, f"{t:.2f}", ratio]))
    lines.append("")
    for (method, batch), (won, tied, lost) in sorted(score.items()):
        lines.append(
            f"- {method} q={batch}: median better than Ax's on {won}, equal on {tied}, "
            f"worse on {lost} of {won + tied + lost} families"
        )
    methods = sorted({(r["method"], r["batch"]) for r in families})
    names = sorted({n for r in families for n in r["instances"]})
    by_cell = {(r["problem"], r["method"], r["batch"]): r for r in rows}
    head = ["instance", *(f"{m} q={b}" for m, b in methods)]
    lines += [
        "",
        "Median final log10 regret (function units) per instance:",
        "",
        _cells(head),
        _cells(["---"] * len(head)),
    ]
    for name in names:
        cells = [name]
        for m, b in methods:
            cell = by_cell.get((name, m, b), {})
            cells.append(f"{cell['final'][1]:.2f}" if "final" in cell else "")
        lines.append(_cells(cells))
    return [*lines, ""]


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
    ap.add_argument(
        "--methods",
        default="loopctl,ax,sobol",
        help="comma-separated; loopctl[-<method>][:key=value,...] takes options (see above)",
    )
    ap.add_argument(
        "--instances",
        default="0-4",
        help="generated instances for gen and gen-<family>: 0-4, or 0,2,7",
    )
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--batch", default="1,4")
    ap.add_argument(
        "--budget", type=int, default=None, help="trials per run (default: each problem's own)"
    )
    ap.add_argument(
        "--gen-trials-per-dim",
        type=int,
        default=None,
        help="trials per dimension for generated problems (default: theirs, 10)",
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
        instances = _instances(args.instances)
        names = [n for t in args.problems.split(",") for n in generated_names(t, instances)]
        kinds = {n: problem(n).kind for n in names}
        methods = split_methods(args.methods)
        bases = {m: parse_method(m).base for m in methods}  # fails early on a bad option
        budgets = {n: args.budget for n in names}
        if args.budget is None and args.gen_trials_per_dim is not None:
            for n in names:
                if n.startswith("gen-"):
                    budgets[n] = args.gen_trials_per_dim * len(problem(n).space)
        jobs = [
            (p, m, int(b), s, budgets[p])
            for s in range(args.seeds)
            for p in names
            for m in methods
            for b in args.batch.split(",")
            if (p, m, int(b), s) not in done
            and not (bases[m] == "loopctl-nofail" and kinds[p] != "fail")
            and not (bases[m] == "loopctl-nsga2" and kinds[p] != "multi")
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


def _instances(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        low, dash, high = part.partition("-")
        out += list(range(int(low), int(high) + 1)) if dash else [int(low)]
    return out


if __name__ == "__main__":
    main()
