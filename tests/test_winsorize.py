"""The ``winsorize`` option: Ax's clip of an objective's bad tail, off by default."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from loopctl.errors import SpecError
from loopctl.spec import parse_spec
from loopctl.strategies.surrogate import training_data
from loopctl.strategies.warping import tukey_floor
from tests.test_botorch_gp import data


def _spec(**options: Any) -> Any:
    return parse_spec(
        {
            "name": "w",
            "seed": 0,
            "space": [{"name": "x", "type": "range", "bounds": [0, 1]}],
            "objectives": [{"name": "y", "goal": "minimize"}],
            "budget": {"trials": 20},
            "strategy": {"options": options},
        }
    )


def test_tukey_floor_is_axs_lower_fence() -> None:
    y = np.array([-1000.0, -9.0, -3.0, -2.0, -1.0, 0.0, 1.0, 2.0])
    # positions 1.75 and 5.25 of the sorted values, taken outward: q1 = -9, q3 = 1
    assert tukey_floor(y) == pytest.approx(-9.0 - 1.5 * (1.0 + 9.0))


def test_winsorize_clips_only_the_bad_tail_and_is_off_by_default() -> None:
    # minimised: 500 is the bad outlier; signed (larger is better) it is -500
    values = [500.0, 9.0, 3.0, 2.0, 1.0, 0.0, -1.0, -2.0]
    obs = [({"x": i / 10}, v) for i, v in enumerate(values)]
    off = training_data(data(_spec(warp_outcomes=False), obs), [])
    assert off.y[:, 0].tolist() == [-v for v in values]
    on = training_data(data(_spec(warp_outcomes=False, winsorize=True), obs), [])
    signed = np.array([-v for v in values])
    expected = np.maximum(signed, tukey_floor(signed))
    assert on.y[:, 0].tolist() == pytest.approx(expected.tolist())
    assert on.y[0, 0] > -500 and on.y[-1, 0] == 2.0  # the best value is untouched


def test_winsorize_must_be_a_boolean() -> None:
    with pytest.raises(SpecError, match=r"strategy\.options\.winsorize"):
        _spec(winsorize="maybe")
