"""`loopctl backtest`: the Liang et al. metrics, the random baseline, the CLI end to end."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from loopctl.backtest import backtest, metrics
from tests.conftest import CAMPAIGNS, loopctl


def liang_random_top(n_pool: int, cycles: int) -> np.ndarray:
    """Liang et al.'s recursion as their notebook writes it (0-based cycle index i)."""
    m = math.ceil(0.05 * n_pool)
    p, e = np.zeros(cycles), np.zeros(cycles)
    p[0] = e[0] = m / n_pool
    for i in range(1, cycles):
        p[i] = (m - e[i - 1]) / (n_pool - i)
        e[i] = p[: i + 1].sum()
    return e / m


@pytest.mark.parametrize("n_pool", [94, 100, 164, 178, 600])
def test_random_baseline_is_liangs_recursion(n_pool: int) -> None:
    ours = metrics.random_top(n_pool, n_pool - 1)
    assert np.allclose(ours, liang_random_top(n_pool, n_pool - 1), atol=1e-12)
    assert metrics.random_cycles_to(n_pool, 1.0) == n_pool


def test_ties_at_the_edge_all_count_and_hits_are_capped() -> None:
    values = np.array([5.0, 3.0, 5.0, 5.0, 1.0] + [0.0] * 35)  # n_top(40) = 2; three tie at 5
    top = metrics.top_set(values, sign=1.0)
    assert top == {0, 2, 3}
    curve = metrics.top_curve([2, 1, 3, 0], top, cycles=5, m=2)
    assert curve.tolist() == [0.5, 0.5, 1.0, 1.0, 1.0]
    # random sampling can find a tied top row sooner than when one row is the top
    assert metrics.random_top(40, 3, n_hits=3)[0] > metrics.random_top(40, 3)[0]
    minimise = metrics.top_set(values, sign=-1.0)
    assert len(minimise) == 35  # the 35 zeros tie for the best two places


def write_pool(folder: Path, n: int = 40) -> tuple[Path, Path]:
    """A one-parameter pool of n integers, measured twice each (the backtest averages)."""
    data = folder / "pool.csv"
    with data.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["k", "y"])
        for k in range(n):
            for noise in (-0.1, 0.1):
                w.writerow([k, (k - 13) ** 2 + noise])
    campaign = folder / "pool.yaml"
    campaign.write_text(
        yaml.safe_dump(
            {
                "name": "pool",
                "seed": 0,
                "space": [{"name": "k", "type": "integer", "bounds": [0, n - 1]}],
                "objectives": [{"name": "y", "goal": "minimize"}],
                "budget": {"trials": n},
            }
        )
    )
    return campaign, data


@pytest.mark.slow
def test_random_sampling_reproduces_the_analytic_baseline(tmp_path: Path) -> None:
    campaign, data = write_pool(tmp_path)
    result = backtest(
        campaign, data, strategies=["random"], seeds=120, workers=1, out=tmp_path / "out"
    )
    assert result.summary["n_pool"] == 40 and result.summary["replicates_averaged"] == 40
    top = metrics.top_set(np.array([(k - 13) ** 2 for k in range(40)], float), -1.0)
    assert top == {12, 13, 14}  # the best and its two neighbours, tied for second place
    runs = [json.loads(line) for line in (tmp_path / "out" / "runs.jsonl").read_text().splitlines()]
    curves = np.array([metrics.top_curve(r["order"], top, 40, 2) for r in runs])
    expected = metrics.random_top(40, 40, len(top))
    standard_error = curves.std(axis=0, ddof=1) / math.sqrt(len(runs)) + 1e-3
    assert np.all(np.abs(curves.mean(axis=0) - expected) < 4 * standard_error)
    # the seeds really differ: a shuffled pool, not one order 120 times
    assert len({tuple(r["order"][:5]) for r in runs}) > 100


@pytest.mark.slow
def test_backtest_cli_on_the_shipped_plate_and_resume(tmp_path: Path) -> None:
    out = tmp_path / "bt"
    args = [
        "backtest",
        str(CAMPAIGNS / "catalyst-plate.yaml"),
        "--data",
        str(CAMPAIGNS / "catalyst-plate.csv"),
        "--seeds",
        "2",
        "--budget",
        "14",
        "--initial",
        "2",
        "--strategy",
        "auto",
        "--strategy",
        "forest=auto,surrogate=forest",
        "--strategy",
        "random",
        "--workers",
        "2",
        "--out",
        str(out),
    ]
    first = loopctl(*args, timeout=600)
    assert "| auto | 2 |" in first.stdout and "| random (analytic) |" in first.stdout
    assert "[6/6 runs]" in first.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_pool"] == 286 and summary["n_top"] == 15
    assert set(summary["arms"]) == {"auto", "forest", "random"}
    picked = summary["arms"]["forest"]["picked"]
    assert picked.get("botorch:forest", 0) > 0, picked
    assert (out / "top.png").stat().st_size > 10_000
    lines = (out / "runs.jsonl").read_text().splitlines()
    assert len(lines) == 6
    again = loopctl(*args, timeout=600)  # every run is there: nothing is run twice
    assert "runs]" not in again.stderr
    assert (out / "runs.jsonl").read_text().splitlines() == lines
    changed = loopctl(*[a if a != "14" else "15" for a in args], check=False)
    assert changed.returncode == 1 and "use another --out folder" in changed.stderr


def test_backtest_names_what_it_cannot_use(tmp_path: Path) -> None:
    campaign, data = write_pool(tmp_path)
    text = data.read_text().replace("k,y", "k,yield")
    data.write_text(text)
    r = loopctl(
        "backtest", str(campaign), "--data", str(data), "--out", str(tmp_path / "o"), check=False
    )
    assert r.returncode == 1 and "no column for the objective 'y'" in r.stderr
    assert "--column y=COLUMN" in r.stderr
    ok = loopctl(
        "backtest",
        str(campaign),
        "--data",
        str(data),
        "--column",
        "y=yield",
        "--strategy",
        "random",
        "--seeds",
        "1",
        "--budget",
        "3",
        "--out",
        str(tmp_path / "o"),
    )
    assert "| random | 1 |" in ok.stdout
    data.write_text(text.replace("13,", "13.5,", 1))
    bad = loopctl(
        "backtest", str(campaign), "--data", str(data), "--column", "y=yield", check=False
    )
    assert bad.returncode == 1 and "row" in bad.stderr and "k" in bad.stderr


def test_a_campaign_with_two_objectives_is_scored_on_the_first(tmp_path: Path) -> None:
    campaign, data = write_pool(tmp_path)
    spec = yaml.safe_load(campaign.read_text())
    spec["objectives"].append({"name": "cost", "goal": "minimize"})
    spec["outcome_constraints"] = [{"name": "cost", "op": "<=", "bound": 3}]
    campaign.write_text(yaml.safe_dump(spec))
    result = backtest(
        campaign, data, strategies=["random"], seeds=2, budget=5, workers=1, out=tmp_path / "o"
    )
    assert result.summary["objective"] == "y" and result.summary["goal"] == "minimize"
    assert result.summary["arms"]["random"]["runs"] == 2


def test_a_pool_of_formulas_backtests_and_validates(tmp_path: Path) -> None:
    """A formula parameter must have a pool; the backtest's runs parse their campaign with
    the pool checked once, and used to leave the pool out of that parse: every run failed."""
    formulas = ["NaCl", "KCl", "LiF", "MgO", "CaO", "ZnS", "GaAs", "CdTe", "SiC", "AlN"]
    campaign = tmp_path / "f.yaml"
    campaign.write_text(
        yaml.safe_dump(
            {
                "name": "formulas",
                "space": [{"name": "formula", "type": "formula"}],
                "objectives": [{"name": "gap", "goal": "maximize"}],
                "budget": {"trials": 10},
                "pool": {"rows": [{"formula": f} for f in formulas]},
            }
        )
    )
    data = tmp_path / "f.csv"
    data.write_text("formula,gap\n" + "".join(f"{f},{i}\n" for i, f in enumerate(formulas)))
    assert "formula: formula a chemical formula" in loopctl("validate", str(campaign)).stdout
    result = backtest(
        campaign, data, strategies=["random"], seeds=2, budget=4, workers=1, out=tmp_path / "o"
    )
    assert result.summary["arms"]["random"]["runs"] == 2
