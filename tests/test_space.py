"""Encoding, decoding and validation of parameters."""

from __future__ import annotations

import numpy as np
import pytest

from loopctl.errors import ValidationError
from loopctl.space import Space, project_to_simplex
from loopctl.spec import parse_spec
from loopctl.values import formula

SPEC = {
    "name": "s",
    "space": [
        {"name": "t", "type": "range", "bounds": [1, 1000], "log": True},
        {"name": "n", "type": "integer", "bounds": [1, 4]},
        {"name": "solvent", "type": "choice", "values": ["water", "ethanol", "dmf"]},
        {"name": "p", "type": "fixed", "value": 2.5},
        {
            "name": "c",
            "type": "composition",
            "elements": ["Cu", "Pd", "Au"],
            "bounds": {"Cu": [0.1, 0.6], "Au": [0.0, 0.3]},
        },
    ],
    "objectives": [{"name": "y", "goal": "maximize"}],
    "budget": {"trials": 5},
}


@pytest.fixture
def space() -> Space:
    return Space(parse_spec(SPEC).space)


def test_round_trip(space: Space) -> None:
    v = {"t": 10.0, "n": 3, "solvent": "dmf", "p": 2.5, "c": {"Cu": 0.2, "Pd": 0.5, "Au": 0.3}}
    x = space.encode(v)
    assert x.shape == (space.dim,) == (1 + 1 + 1 + 3,)  # a choice is one categorical column
    assert space.cat_dims == (2,) and x[2] == 2.0
    back = space.decode(x)
    assert back["t"] == pytest.approx(10.0) and back["n"] == 3 and back["solvent"] == "dmf"
    assert back["c"] == pytest.approx(v["c"])
    assert space.equalities[0].indices == (3, 4, 5)


def test_a_range_decodes_its_bounds_as_written() -> None:
    """An optimiser stopping on the upper bound of anneal_time in [1, 60] min (log) gave
    59.999999999999986 (exp(log(60))), which went to the robot, the export and status
    --json; the bounds come back exact, and nothing decodes outside them."""
    params = parse_spec(
        {
            **SPEC,
            "space": [
                {"name": "t", "type": "range", "bounds": [1, 60], "log": True},
                {"name": "r", "type": "range", "bounds": [0.5, 2.0], "log": True},
                {"name": "a", "type": "range", "bounds": [-0.3, 0.7]},
            ],
        }
    ).space
    space = Space(params)
    assert space.decode(np.ones(3)) == {"t": 60.0, "r": 2.0, "a": 0.7}
    assert space.decode(np.zeros(3)) == {"t": 1.0, "r": 0.5, "a": -0.3}
    for u in np.linspace(0, 1, 1001):
        v = space.decode(np.full(3, u))
        assert 1 <= v["t"] <= 60 and 0.5 <= v["r"] <= 2 and -0.3 <= v["a"] <= 0.7


def test_sobol_points_are_feasible(space: Space) -> None:
    rng = np.random.default_rng(0)
    for u in rng.random((200, space.sobol_dim())):
        v = space.validate(space.from_unit(u))
        fr = np.array(list(v["c"].values()))
        assert abs(fr.sum() - 1) < 1e-12
        assert 0.1 <= v["c"]["Cu"] <= 0.6 and v["c"]["Au"] <= 0.3


def test_projection_meets_bounds_exactly() -> None:
    lo, hi = np.array([0.1, 0.0, 0.0]), np.array([0.6, 1.0, 0.3])
    for y in ([0.9, 0.9, 0.9], [-1.0, 0.2, 5.0], [0.33, 0.33, 0.33]):
        x = project_to_simplex(np.array(y), lo, hi)
        assert abs(x.sum() - 1) < 1e-12 and (x >= lo).all() and (x <= hi).all()


def test_validate_messages(space: Space) -> None:
    ok = {"t": 10.0, "n": 3, "solvent": "dmf", "c": "Cu0.2Pd0.5Au0.3"}
    assert space.validate(ok)["p"] == 2.5  # fixed filled in; formula parsed
    cases = {
        "parameters.t: 0.5 is outside the bounds": {**ok, "t": 0.5},
        "parameters.n: 2.5 is not a whole number": {**ok, "n": 2.5},
        "parameters.solvent: 'acetone' is not one of": {**ok, "solvent": "acetone"},
        "parameters.c: fractions sum to 0.9": {**ok, "c": {"Cu": 0.2, "Pd": 0.4, "Au": 0.3}},
        "parameters.c.Cu: fraction 0.7 is outside the bounds": {**ok, "c": {"Cu": 0.7, "Pd": 0.3}},
        "parameters.c: element 'Fe' is not in": {**ok, "c": {"Fe": 1.0}},
        "unknown parameter 'q'": {**ok, "q": 1},
        "parameters.n: missing": {k: v for k, v in ok.items() if k != "n"},
        "parameters.t: must be a finite number": {**ok, "t": float("nan")},
        "parameters.p: is fixed at 2.5": {**ok, "p": 3},
    }
    for message, values in cases.items():
        with pytest.raises(ValidationError, match=message.replace("(", r"\(")):
            space.validate(values)


def test_formula_is_pymatgen_normalised() -> None:
    assert formula({"Cu": 0.25, "Pd": 0.75, "Au": 0.0}) == "Cu0.25 Pd0.75"
    assert formula({"Cu": 1.0, "Pd": 0.0}) == "Cu1"
    assert formula({"Pt": 0.224158, "Ag": 0.038013}, digits=3) == "Pt0.855 Ag0.145"


def test_formula_reads_back_through_pymatgen() -> None:
    """Our formula text (written without pymatgen) is what `loopctl import` parses back:
    the same fractions to the 8 decimals written."""
    from pymatgen.core import Composition

    rng = np.random.default_rng(0)
    for _ in range(200):
        x = rng.dirichlet(np.ones(5)) * (rng.random(5) > 0.3)
        if not x.any():
            continue
        fractions = dict(zip(["Cu", "Ag", "Au", "Pd", "Pt"], x.tolist(), strict=True))
        back = Composition(formula(fractions)).fractional_composition
        total = sum(fractions.values())
        for el, f in fractions.items():
            assert back[el] == pytest.approx(f / total, abs=2e-8)


def test_projection_keeps_a_point_on_the_simplex_and_is_idempotent() -> None:
    """Grid fractions stay as written (0 is not turned into 2.6e-16), and projecting twice
    gives the same floats as projecting once: a validated value validates to itself."""
    lo, hi = np.zeros(6), np.ones(6)
    for point in ([0, 0, 0, 0, 0.4, 0.6], [0.1, 0.3, 0.6, 0, 0, 0], [0.1, 0.2, 0.7, 0, 0, 0]):
        assert project_to_simplex(np.array(point, dtype=float), lo, hi).tolist() == point
    rng = np.random.default_rng(3)
    for _ in range(500):
        n = int(rng.integers(2, 8))
        lo = rng.uniform(0, 0.5 / n, n) * rng.integers(0, 2, n)
        hi = np.maximum(lo, rng.uniform(1 / n, 1.0, n))  # feasible: sum lo <= 1 <= sum hi
        y = rng.normal(1 / n, 0.3, n)
        once = project_to_simplex(y, lo, hi)
        assert (once >= lo).all() and (once <= hi).all() and abs(once.sum() - 1) < 1e-12
        assert project_to_simplex(once, lo, hi).tolist() == once.tolist()


def test_the_optimisers_projection_is_the_same_algorithm() -> None:
    """strategies/search.py projects batches in torch (for gradients) with the shift from
    the same simplex_shift: it lands where project_to_simplex does, row by row."""
    import torch

    from loopctl.strategies.search import project

    rng = np.random.default_rng(5)
    for _ in range(50):
        n = int(rng.integers(2, 7))
        lo = rng.uniform(0, 0.5 / n, n) * rng.integers(0, 2, n)
        hi = np.maximum(lo, rng.uniform(1 / n, 1.0, n))
        y = rng.normal(1 / n, 0.5, (4, 3, n))
        batched = project(torch.tensor(y), torch.tensor(lo), torch.tensor(hi), 1.0).numpy()
        for row, got in zip(y.reshape(-1, n), batched.reshape(-1, n), strict=True):
            assert np.abs(project_to_simplex(row, lo, hi) - got).max() < 1e-12
