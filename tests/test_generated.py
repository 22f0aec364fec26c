"""bench/generated.py: Michalewicz instances are distinct problems with a true optimum.

BoTorch gives no Michalewicz optimiser at d = 5; the generator used to keep the whole
domain for it, so its instances were permutations of one problem. It now computes the
optimiser per coordinate and draws a sub-box around it like every other family."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from generated import continuous, michalewicz_optimiser


def test_michalewicz_optimiser_reaches_botorchs_optimal_value() -> None:
    import torch
    from botorch.test_functions.synthetic import Michalewicz

    for dim in (2, 5, 10):
        f = Michalewicz(dim=dim)
        xs = torch.tensor([michalewicz_optimiser(dim)], dtype=torch.float64)
        assert abs(float(f.evaluate_true(xs)) - f.optimal_value) < 1e-4
    # BoTorch's own optimiser at d = 2
    known = Michalewicz(dim=2)._optimizers
    assert known is not None
    assert np.allclose(michalewicz_optimiser(2), known[0], atol=1e-6)


def test_michalewicz_instances_differ_in_their_box() -> None:
    instances = [continuous("michalewicz5", i) for i in range(10)]
    boxes = {(tuple(np.round(x.box_low, 9)), tuple(np.round(x.box_high, 9))) for x in instances}
    assert len(boxes) == 10
    for inst in instances:
        widths = inst.box_high - inst.box_low
        assert np.all(widths < 0.6 * np.pi + 1e-9)  # a sub-box, never the whole [0, pi]
        assert np.all(inst.box_low >= 0) and np.all(inst.box_high <= np.pi + 1e-12)


def test_michalewicz_instance_optimum_is_at_the_mapped_optimiser() -> None:
    xstar = np.array(michalewicz_optimiser(5))
    for i in range(10):
        inst = continuous("michalewicz5", i)
        z = (xstar - inst.box_low) / (inst.box_high - inst.box_low)
        assert np.all((z > 0) & (z < 1))  # inside the box
        user = inst.low + z[inst.perm] * (inst.high - inst.low)
        assert abs(float(inst(user)[0]) - inst.optimum) < 1e-4 * inst.a
        # and nothing in the box does better
        rng = np.random.default_rng(i)
        probe = inst.low + rng.uniform(size=(2000, 5)) * (inst.high - inst.low)
        assert np.min(inst(probe)) > inst.optimum - 1e-6 * inst.a
