"""A backtest's figures: per strategy, medians over seeds, against analytic random sampling."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from loopctl.backtest import metrics
from loopctl.backtest.scenario import Scenario

LEVELS = (0.5, 0.8, 1.0)


def summarise(
    scenario: Scenario, records: Sequence[Mapping[str, Any]], budget: int
) -> dict[str, Any]:
    top = metrics.top_set(scenario.values, scenario.sign)
    m = metrics.n_top(scenario.n_pool)
    horizon = min(budget, scenario.n_pool)
    rand = metrics.random_top(scenario.n_pool, horizon, len(top))
    arms: dict[str, Any] = {}
    for label in dict.fromkeys(r["arm"] for r in records):
        runs = [r for r in records if r["arm"] == label]
        curves = np.array([metrics.top_curve(r["order"], top, horizon, m) for r in runs])
        regrets = np.array(
            [
                metrics.regret_curve(r["order"], scenario.values, scenario.sign, horizon)
                for r in runs
            ]
        )
        median = np.median(curves, axis=0)
        to = {f"{a:g}": [metrics.cycles_to(c, a) for c in curves] for a in LEVELS}
        seconds = [s for r in runs for s in r["seconds"]]
        picked: Counter[str] = Counter()
        for r in runs:
            picked.update(r.get("picked", {}))
        arms[label] = {
            "runs": len(runs),
            "top_median": median.tolist(),
            "top_p05": np.quantile(curves, 0.05, axis=0).tolist(),
            "top_p95": np.quantile(curves, 0.95, axis=0).tolist(),
            "cycles_to": {a: _quartiles(v) for a, v in to.items()},
            "ef_max": float(np.max(median / rand)),
            "af": {
                a: _ratio(metrics.random_cycles_to(scenario.n_pool, float(a), len(top)), _median(v))
                for a, v in to.items()
            },
            "regret_final": _quartiles(regrets[:, -1].tolist()),
            "regret_median": np.median(regrets, axis=0).tolist(),
            "seconds_per_proposal": float(np.median(seconds)) if seconds else 0.0,
            "picked": dict(picked.most_common()),
        }
    return {
        "scenario": scenario.name,
        "objective": scenario.objective,
        "goal": "maximize" if scenario.sign > 0 else "minimize",
        "n_pool": scenario.n_pool,
        "n_top": m,
        "n_tied_top": len(top),
        "budget": horizon,
        "replicates_averaged": scenario.replicates,
        "data_rows_outside_pool": scenario.unmatched,
        "random": {
            "top": rand.tolist(),
            "cycles_to": {f"{a:g}": metrics.random_cycles_to(scenario.n_pool, a) for a in LEVELS},
        },
        "arms": arms,
    }


def _median(values: Sequence[float]) -> float:
    return float(np.median(values)) if values else math.inf


def _quartiles(values: Sequence[float]) -> dict[str, float]:
    """Median and IQR; a run that never got there counts as infinitely many cycles."""
    return {
        f"p{round(q * 100):02d}".replace("p50", "median"): _quantile(values, q)
        for q in (0.25, 0.5, 0.75)
    }


def _quantile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between finite neighbours; infinite when a neighbour is."""
    v = np.sort(np.array(values, dtype=float))
    pos = q * (len(v) - 1)
    lo, hi = v[math.floor(pos)], v[math.ceil(pos)]
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return float(hi)
    return float(lo + (hi - lo) * (pos - math.floor(pos)))


def _ratio(a: float, b: float) -> float:
    return a / b if math.isfinite(b) and b > 0 else 0.0


def _cycles(v: float, budget: int) -> str:
    return f">{budget}" if not math.isfinite(v) else f"{v:g}"


def markdown(summary: Mapping[str, Any]) -> str:
    """One table: cycles to Top% 0.5 / 0.8 / 1.0 (median [IQR]), EF max, AF, regret, time.
    AF is "-" where the median run did not get there within the budget."""
    b = summary["budget"]
    lines = [
        f"Backtest of {summary['scenario']}: {summary['goal']} {summary['objective']} over "
        f"{summary['n_pool']} candidates (top 5 %: {summary['n_top']}), up to {b} cycles.",
        "",
        "| strategy | runs | to Top% 0.5 | to Top% 0.8 | to Top% 1.0 | EF max | AF 0.5 | "
        "AF 0.8 | final regret | s/proposal |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for label, a in summary["arms"].items():
        cells = []
        for level in ("0.5", "0.8", "1"):
            q = a["cycles_to"][level]
            cells.append(
                f"{_cycles(q['median'], b)} [{_cycles(q['p25'], b)}, {_cycles(q['p75'], b)}]"
            )
        r = a["regret_final"]
        af = [f"{a['af'][k]:.2f}" if a["af"][k] else "-" for k in ("0.5", "0.8")]
        lines.append(
            f"| {label} | {a['runs']} | {' | '.join(cells)} | {a['ef_max']:.2f} | "
            f"{af[0]} | {af[1]} | {r['median']:.4g} "
            f"[{r['p25']:.4g}, {r['p75']:.4g}] | {a['seconds_per_proposal']:.2f} |"
        )
    rc = summary["random"]["cycles_to"]
    lines.append(
        f"| random (analytic) | - | {rc['0.5']:g} | {rc['0.8']:g} | {rc['1']:g} | 1.00 | 1.00 | "
        "1.00 | - | - |"
    )
    return "\n".join(lines) + "\n"


def plot(summary: Mapping[str, Any], path: Path) -> None:
    """Top% against cycles: each strategy's median with its 5-95 % band, and random's."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    x = np.arange(1, summary["budget"] + 1)
    for label, a in summary["arms"].items():
        (line,) = ax.plot(x, a["top_median"], label=label)
        ax.fill_between(x, a["top_p05"], a["top_p95"], color=line.get_color(), alpha=0.2)
    ax.plot(x, summary["random"]["top"], "k--", label="random (analytic)")
    ax.set_xlabel("cycle")
    ax.set_ylabel(f"Top% (share of the best {summary['n_top']} found)")
    ax.set_title(f"{summary['scenario']}: median and 5-95 % band")
    ax.set_ylim(0, 1.02)
    ax.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
