"""Outcome warping: a monotone bijection, fitted to the data, invisible in what is reported."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

from loopctl.spec import Spec, parse_spec
from loopctl.strategies.botorch_gp import BotorchStrategy
from loopctl.strategies.warping import Warp
from tests.test_botorch_gp import branin, data


@pytest.mark.parametrize("lam", [0.0, 0.4, 1.0, 1.6, 2.0])
def test_warp_is_an_increasing_bijection_with_the_right_slope(lam: float) -> None:
    w = Warp(3.0, 7.0, lam)
    y = torch.linspace(-500, 500, 2001, dtype=torch.float64)
    z = w.forward(y)
    assert bool((z[1:] > z[:-1]).all())
    assert torch.allclose(w.inverse(z), y, atol=1e-9)  # within the saturation bounds
    numeric = (w.forward(y + 1e-6) - w.forward(y - 1e-6)) / 2e-6
    assert torch.allclose(numeric, w.slope(y), rtol=1e-5)
    # every posterior sample, however extreme, has an inverse
    assert bool(torch.isfinite(w.inverse(torch.tensor([-1e3, 1e3], dtype=torch.float64))).all())


def test_fitted_lambda_follows_the_skew() -> None:
    rng = np.random.default_rng(0)
    heavy_bad_tail = -np.exp(1.5 * rng.normal(size=60))  # maximised: a long low tail
    heavy_good_tail = np.exp(1.5 * rng.normal(size=60))
    assert Warp.fit(heavy_bad_tail).lam > 1.5
    assert Warp.fit(heavy_good_tail).lam < 0.5
    assert Warp.fit(heavy_bad_tail[:5]).linear  # too few points to judge a shape
    assert Warp.fit(np.ones(20)).linear


def _branin_data(warp: bool, n: int = 14) -> tuple[Spec, list[tuple[dict[str, float], float]]]:
    s = parse_spec(
        {
            "name": "w",
            "seed": 1,
            "space": [
                {"name": "x1", "type": "range", "bounds": [-5, 10]},
                {"name": "x2", "type": "range", "bounds": [0, 15]},
            ],
            "objectives": [{"name": "y", "goal": "minimize"}],
            "budget": {"trials": 30},
            "strategy": {"options": {"warp_outcomes": warp}},
        }
    )
    rng = np.random.default_rng(5)
    xs = [{"x1": -5 + 15 * a, "x2": 15 * b} for a, b in rng.random((n, 2))]
    return s, [(x, branin(x["x1"], x["x2"])) for x in xs]


def test_proposal_records_the_warp_and_predicts_in_the_objectives_units() -> None:
    s, obs = _branin_data(True)
    p = BotorchStrategy().propose(data(s, obs), 2)
    lam = p.diagnostics["outcome_warping"]["yeo_johnson_lambda"]
    assert 1.0 < lam <= 2.0  # Branin's long tail of bad values is compressed
    values = [v for _, v in obs]
    for c in p.candidates:
        assert c.predicted is not None
        mean, sd = c.predicted["y"]
        # a prediction in warped units would be O(1) and could be negative
        assert 0 <= mean <= max(values) and sd > 0 and math.isfinite(sd)
    s_off, _ = _branin_data(False)
    off = BotorchStrategy().propose(data(s_off, obs), 1)
    assert "outcome_warping" not in off.diagnostics


def _unit_square(fn: Callable[[float, float], float], seed: int) -> tuple[Spec, list[Any]]:
    s = parse_spec(
        {
            "name": "w",
            "seed": seed,
            "space": [{"name": n, "type": "range", "bounds": [0, 1]} for n in "ab"],
            "objectives": [{"name": "y", "goal": "maximize"}],
            "budget": {"trials": 30},
            "strategy": {"options": {"warp_outcomes": "auto"}},
        }
    )
    rng = np.random.default_rng(seed)
    xs = [{"a": a, "b": b} for a, b in rng.random((20, 2))]
    return s, [(x, fn(x["a"], x["b"])) for x in xs]


@pytest.mark.parametrize(
    ("fn", "expected"),
    [
        (lambda a, b: math.exp(6 * a + b), "warped"),  # a long good tail: the warp evens it
        (lambda a, b: math.sin(5 * a) + b**4, "plain"),  # smooth, and bent by the warp
    ],
)
@pytest.mark.parametrize("seed", [1, 2])
def test_auto_warp_keeps_the_gp_that_predicts_left_out_trials_better(
    fn: Callable[[float, float], float], expected: str, seed: int
) -> None:
    s, obs = _unit_square(fn, seed)
    p = BotorchStrategy().propose(data(s, obs), 1)
    warp = p.diagnostics["surrogate"]["warp"]
    scores = warp["loo_log_density"]
    assert warp["chosen"] == expected == max(scores, key=scores.get), warp
    # the proposal is made and reported with the model that was kept
    assert ("outcome_warping" in p.diagnostics) == (expected == "warped")
    predicted = p.candidates[0].predicted
    assert predicted is not None
    mean, _ = predicted["y"]
    assert min(v for _, v in obs) - 1 <= mean <= 2 * max(v for _, v in obs)
