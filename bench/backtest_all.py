"""Backtest strategies on every public dataset (bench/datasets.py), one table per family.

    .venv/bin/python bench/backtest_all.py --strategy auto --strategy random --seeds 20 \\
        --out runs/backtest_all

For each scenario (``--scenarios``: keys or family names, comma-separated; default all)
this writes the campaign into ``OUT/KEY/`` and runs ``loopctl.backtest.backtest`` there:
every (strategy, seed) run is appended to ``OUT/KEY/runs.jsonl`` as it finishes, and a
rerun with the same settings skips the runs already there (the backtest's own resume).
Defaults follow Liang et al. 2021: 2 random initial trials, batch 1, and a budget of
min(pool size, 100) cycles per scenario. After each scenario ``OUT/RESULTS.md`` (one
table per family: median [IQR] cycles to Top% 0.8, EF max, final regret, seconds per
proposal for each strategy, and the best strategy per row) and ``OUT/results.json`` (every
scenario's summary) are rewritten; ``--report-only`` rebuilds them from the sub-folders.
``--list`` prints the scenarios.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("LOOPCTL_TORCH_THREADS", "1")  # the workers share the cores

import argparse
import json
import math
import sys
import time
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datasets import DATA, FAMILIES, INITIAL, SKIPPED, Scenario, describe, scenarios, write_campaign
from datasets import main as list_scenarios

LEVEL = "0.8"  # the Top% level the tables report cycles to


# ---------------------------------------------------------------------- running


def run_scenario(
    s: Scenario,
    out: Path,
    strategies: Sequence[str],
    seeds: int,
    budget: int | None,
    initial: int | None,
    workers: int,
) -> dict[str, Any]:
    """One scenario's entry for results.json: its summary, or the error that stopped it."""
    from loopctl.backtest import backtest

    folder = out / s.key
    entry = _entry(s)
    t0 = time.perf_counter()

    def progress(done: int, total: int, record: Mapping[str, Any] | None) -> None:
        if record is None:
            print(f"{s.key}: {done}/{total} runs already done", flush=True)
            return
        print(
            f"{s.key}: {done}/{total} {record['arm']} seed {record['seed']}: "
            f"{len(record['order'])} cycles, {sum(record['seconds']):.1f} s",
            flush=True,
        )

    try:
        campaign, data, columns = write_campaign(s.key, folder)
        result = backtest(
            campaign,
            data,
            strategies=strategies,
            seeds=seeds,
            budget=budget or s.budget,
            initial=initial,
            workers=workers,
            out=folder,
            columns=columns,
            progress=progress,
        )
    except Exception as exc:  # recorded and reported; the other scenarios still run
        print(f"{s.key}: FAILED: {type(exc).__name__}: {exc}", flush=True)
        return entry | {"error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()}
    return entry | {"summary": result.summary, "wall_s": time.perf_counter() - t0}


def _entry(s: Scenario) -> dict[str, Any]:
    return {
        "family": s.family,
        "source": s.source,
        "objective": s.objective,
        "goal": s.goal,
        "n_candidates": s.n_candidates,
        "inputs": describe(s),
        "grid_sampled": s.grid_sampled,
        "other_objectives": list(s.others),
        "note": s.note,
    }


def from_folder(s: Scenario, out: Path, strategies: Sequence[str]) -> dict[str, Any] | None:
    """A scenario's entry from the summary.json its last backtest wrote, if any."""
    path = out / s.key / "summary.json"
    if not path.is_file():
        return None
    summary = json.loads(path.read_text(encoding="utf-8"))
    if strategies:
        summary["arms"] = {k: v for k, v in summary["arms"].items() if k in strategies}
    return _entry(s) | {"summary": summary}


# ---------------------------------------------------------------------- report


def _cycles(v: float, budget: int) -> str:
    return f">{budget}" if not math.isfinite(v) else f"{v:g}"


def _rank(arm: Mapping[str, Any]) -> tuple[float, float, float]:
    """Fewer cycles to Top% 0.8, then a higher EF max, then a lower final regret."""
    return (
        arm["cycles_to"][LEVEL]["median"],
        -arm["ef_max"],
        arm["regret_final"]["median"],
    )


def best(arms: Mapping[str, Mapping[str, Any]]) -> str:
    """The best strategy of a row; several when they tie on every criterion."""
    if not arms:
        return ""
    ranks = {label: _rank(a) for label, a in arms.items()}
    top = min(ranks.values())
    return ", ".join(label for label, r in ranks.items() if r == top)


def markdown(
    results: Mapping[str, Mapping[str, Any]], labels: Sequence[str], command: str = ""
) -> str:
    summaries = [r["summary"] for r in results.values() if "summary" in r]
    seeds = max((a["runs"] for s in summaries for a in s["arms"].values()), default=0)
    initial = sorted({str(s["settings"]["initial"]) for s in summaries})
    lines = [
        "# Backtests on the public datasets",
        "",
        f"Data: {DATA} (bench/datasets.py). Up to {seeds} seeds per strategy, "
        f"{' or '.join(initial) or '-'} random initial trials, batch 1; the budget of each "
        "scenario is in its row." + (f" Command: `{command}`." if command else ""),
        "",
        f"Per strategy: cycles to Top% {LEVEL} (share of the pool's top-5 % candidates found), "
        "median [25th, 75th percentile] over seeds (>B: not reached within the budget B); "
        "EF max (max over cycles of the median Top% over random sampling's analytic Top%); "
        "final regret (best in the pool minus best found, in the objective's units, median); "
        "median seconds per proposal. `random to 0.8`: cycles analytic random sampling needs. "
        "Best: fewest cycles to Top% 0.8, then highest EF max, then lowest regret. "
        "(grid): the data cover a full factorial or every combination (PROVENANCE.md), "
        "the others were mostly collected along optimisation campaigns.",
        "",
    ]
    for family in FAMILIES:
        rows = {k: r for k, r in results.items() if r["family"] == family}
        if not rows:
            continue
        head = ["scenario", "objective", "N", "budget", "random to 0.8"]
        for label in labels:
            head += [
                f"{label}: to 0.8",
                f"{label}: EF max",
                f"{label}: regret",
                f"{label}: s/prop",
            ]
        head.append("best")
        lines += [f"## {family}", "", _cells(head), _cells(["---"] * len(head))]
        for key, r in rows.items():
            name = key + (" (grid)" if r["grid_sampled"] else "")
            first = [name, f"{r['goal'][:3]} {r['objective']}", str(r["n_candidates"])]
            if "summary" not in r:
                error = r.get("error", "not run").replace("|", "/").replace("\n", " ")[:200]
                lines.append(_cells([*first, "-", "-", f"error: {error}"]))
                continue
            summary = r["summary"]
            b = summary["budget"]
            cells = [*first, str(b), f"{summary['random']['cycles_to'][LEVEL]:g}"]
            for label in labels:
                a = summary["arms"].get(label)
                if a is None:
                    cells += ["-"] * 4
                    continue
                q = a["cycles_to"][LEVEL]
                cells += [
                    f"{_cycles(q['median'], b)} [{_cycles(q['p25'], b)}, {_cycles(q['p75'], b)}]",
                    f"{a['ef_max']:.2f}",
                    f"{a['regret_final']['median']:.3g}",
                    f"{a['seconds_per_proposal']:.2f}",
                ]
            cells.append(best({k: v for k, v in summary["arms"].items() if k in labels}))
            lines.append(_cells(cells))
        lines.append("")
    notes = [f"- {k}: {r['note']}" for k, r in results.items() if r.get("note")]
    lines += ["## Notes on the scenarios", "", *notes, "", "## Not benchmarked", ""]
    lines += [f"- {k}: {why}" for k, why in SKIPPED.items()]
    return "\n".join(lines) + "\n"


def _cells(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


# ---------------------------------------------------------------------- main


def _select(text: str | None, available: Mapping[str, Scenario]) -> list[str]:
    if not text:
        return list(available)
    keys: list[str] = []
    for item in (t.strip() for t in text.split(",") if t.strip()):
        if item in FAMILIES:
            keys += [k for k, s in available.items() if s.family == item]
        elif item in available:
            keys.append(item)
        else:
            raise SystemExit(
                f"unknown scenario or family {item!r}; scenarios: {', '.join(available)}; "
                f"families: {', '.join(FAMILIES)}"
            )
    return list(dict.fromkeys(keys))


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument(
        "--scenarios",
        metavar="KEYS",
        help="scenario keys or family names, comma-separated (default: all)",
    )
    ap.add_argument(
        "--strategy",
        action="append",
        metavar="SPEC",
        help="as loopctl backtest --strategy: auto, random, sobol, botorch or "
        "LABEL=METHOD,key=value,... (repeat it; default: auto and random)",
    )
    ap.add_argument("--seeds", type=int, default=20, help="seeded runs per strategy (default 20)")
    ap.add_argument(
        "--budget", type=int, help="cycles per run (default: min(pool size, 100) per scenario)"
    )
    ap.add_argument(
        "--initial",
        type=int,
        default=INITIAL,
        help=f"random initial trials (default {INITIAL}, Liang et al.'s protocol)",
    )
    ap.add_argument("--workers", type=int, default=2, help="runs at once (default 2)")
    ap.add_argument(
        "--out",
        default="runs/backtest_all",
        help="one sub-folder per scenario, RESULTS.md and results.json (default runs/backtest_all)",
    )
    ap.add_argument(
        "--report-only",
        action="store_true",
        help="run nothing: rebuild RESULTS.md and results.json from the sub-folders",
    )
    ap.add_argument("--list", action="store_true", help="print the scenarios and exit")
    args = ap.parse_args(argv)
    available = scenarios()
    if not available:
        print(f"no datasets found in {DATA}", file=sys.stderr)
        return 1
    if args.list:
        list_scenarios()
        return 0
    keys = _select(args.scenarios, available)
    strategies: list[str] = args.strategy or ["auto", "random"]
    labels = [s.partition("=")[0].strip() for s in strategies]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    settings = {
        "seeds": args.seeds,
        "budget": args.budget,
        "initial": args.initial,
        "workers": args.workers,
        "strategies": strategies,
        "command": "bench/backtest_all.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    results: dict[str, dict[str, Any]] = {}
    failed = 0
    for i, key in enumerate(keys, 1):
        s = available[key]
        if args.report_only:
            entry = from_folder(s, out, labels)
            if entry is None:
                continue
        else:
            print(
                f"[{i}/{len(keys)}] {key}: {s.n_candidates} candidates, {describe(s)}", flush=True
            )
            entry = run_scenario(
                s, out, strategies, args.seeds, args.budget, args.initial, args.workers
            )
            failed += "error" in entry
        results[key] = entry
        (out / "results.json").write_text(
            json.dumps({"settings": settings, "scenarios": results}, indent=1), encoding="utf-8"
        )
        text = markdown(results, labels, "" if args.report_only else str(settings["command"]))
        (out / "RESULTS.md").write_text(text, encoding="utf-8")
    print(f"wrote {out / 'RESULTS.md'} and {out / 'results.json'}", flush=True)
    if failed:
        print(f"{failed} scenario(s) failed; see results.json for the tracebacks", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
