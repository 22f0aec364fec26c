"""loopctl.pareto: fronts and hypervolumes checked by hand and against pymoo and BoTorch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as hst

from loopctl.pareto import dominates, hypervolume, hypervolume_2d, non_dominated, pareto_mask


def test_dominates_needs_one_strict_improvement() -> None:
    assert dominates((1, 2), (1, 3)) and not dominates((1, 3), (1, 2))
    assert not dominates((1, 2), (1, 2))  # a tie beats nothing
    assert not dominates((0, 5), (5, 0))


def test_front_by_hand_keeps_ties() -> None:
    points = [(1, 5), (2, 2), (5, 1), (3, 3), (2, 2), (1, 6), (6, 6)]
    assert non_dominated(points) == [0, 1, 2, 4]
    assert pareto_mask(points) == [True, True, True, False, True, False, False]
    assert non_dominated([]) == [] and pareto_mask(np.zeros((0, 2))) == []


def test_two_objective_hypervolume_by_hand() -> None:
    # staircase under (4, 4): 3x1 + 2x1 + 1x1 strips
    front = [(1, 3), (2, 2), (3, 1)]
    assert hypervolume_2d(front, (4, 4)) == 6.0
    # dominated, duplicate and out-of-reference points add nothing
    assert hypervolume_2d([*front, (3, 3), (2, 2), (5, 0), (0, 4)], (4, 4)) == 6.0
    assert hypervolume_2d([], (1, 1)) == 0.0
    assert hypervolume_2d(np.array(front, dtype=float), np.array([4.0, 4.0])) == 6.0
    assert hypervolume(front, (4, 4)) == 6.0


def test_three_objective_hypervolume_by_hand() -> None:
    # one point: a box; two points: two boxes less their intersection
    assert hypervolume([(1, 2, 3)], (2, 4, 6)) == 1 * 2 * 3
    assert hypervolume([(0, 0, 1), (1, 1, 0)], (2, 2, 2)) == 4 + 2 - 1
    assert hypervolume([(0, 0, 0, 0)], (1, 2, 3, 4)) == 24
    assert hypervolume([(1,), (3,)], (4,)) == 3


@given(
    hst.lists(
        hst.lists(hst.integers(0, 4).map(float), min_size=3, max_size=3), min_size=1, max_size=30
    )
)
@settings(max_examples=300, deadline=None)
def test_non_dominated_agrees_with_pymoo(points: list[list[float]]) -> None:
    """The plain-Python filter behind `status` (no numpy) finds pymoo's front, ties kept."""
    from pymoo.util.nds.non_dominated_sorting import find_non_dominated

    assert non_dominated(points) == sorted(int(i) for i in find_non_dominated(np.array(points)))


@pytest.mark.parametrize("m", [2, 3, 4])
def test_hypervolume_agrees_with_botorch(m: int) -> None:
    """BoTorch maximises: its hypervolume of -y above -ref is ours of y below ref."""
    from botorch.utils.multi_objective.hypervolume import Hypervolume
    from botorch.utils.multi_objective.pareto import is_non_dominated

    rng = np.random.default_rng(m)
    for trial in range(20):
        n = int(rng.integers(1, 40 if m < 4 else 15))
        y = rng.random((n, m))
        if trial % 2:  # points on a sphere: most of them on the front
            y = np.abs(rng.normal(size=(n, m)))
            y /= np.linalg.norm(y, axis=1, keepdims=True)
        ref = np.full(m, 1.1)
        neg = -torch.tensor(y, dtype=torch.float64)
        expected = Hypervolume(-torch.tensor(ref)).compute(neg[is_non_dominated(neg)])
        assert hypervolume(y, ref) == pytest.approx(expected, rel=1e-12, abs=1e-14)
        if m == 2:
            assert hypervolume_2d(y, ref) == pytest.approx(expected, rel=1e-12, abs=1e-14)
