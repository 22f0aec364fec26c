"""The simulated oracle's computations: known optima, EMT sanity, table look-up, refusals."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from loopctl.drivers.oracle_models import (
    OracleConfigError,
    build_oracle,
    emt_cell,
    emt_mixing_energy,
    site_counts,
)

BRANIN_MIN = 0.397887
HARTMANN6_MIN = -3.32237
HARTMANN6_ARGMIN = (0.20169, 0.150011, 0.476874, 0.275332, 0.311652, 0.6573)
METALS = ["Cu", "Ag", "Au", "Pd", "Pt"]


def _ranges(*names: str) -> list[dict[str, Any]]:
    return [{"name": n, "type": "range", "bounds": [0, 1]} for n in names]


def _composition(*elements: str, name: str = "composition") -> dict[str, Any]:
    return {"name": name, "type": "composition", "elements": list(elements)}


@pytest.fixture(scope="module")
def emt() -> Any:
    return build_oracle("emt", objectives=["e_mix"], parameters=[_composition(*METALS)])


# ---------------------------------------------------------------- functions


@pytest.mark.parametrize("x1, x2", [(-math.pi, 12.275), (math.pi, 2.275), (9.42478, 2.475)])
def test_branin_known_minima(x1: float, x2: float) -> None:
    f = build_oracle("function", function="branin", objectives=["y"], parameters=_ranges("a", "b"))
    assert f({"a": x1, "b": x2})["y"] == pytest.approx(BRANIN_MIN, abs=1e-5)
    assert f({"a": 0.0, "b": 0.0})["y"] > BRANIN_MIN + 1


def test_hartmann6_known_minimiser() -> None:
    names = [f"x{i}" for i in range(6)]
    f = build_oracle("function", function="hartmann6", objectives=["y"], parameters=_ranges(*names))
    assert f(dict(zip(names, HARTMANN6_ARGMIN, strict=True)))["y"] == pytest.approx(
        HARTMANN6_MIN, abs=1e-4
    )
    assert f(dict.fromkeys(names, 0.5))["y"] > HARTMANN6_MIN + 0.1


@pytest.mark.parametrize(
    "name, at_min, elsewhere",
    [("ackley", 0.0, 1.0), ("sphere", 0.0, 1.0), ("rosenbrock", 1.0, 0.0)],
)
def test_other_benchmarks_zero_at_minimum(name: str, at_min: float, elsewhere: float) -> None:
    f = build_oracle("function", function=name, objectives=["y"], parameters=_ranges("a", "b", "c"))
    assert f(dict.fromkeys("abc", at_min))["y"] == pytest.approx(0.0, abs=1e-12)
    assert f(dict.fromkeys("abc", elsewhere))["y"] > 0.5


def test_inputs_follow_spec_order_not_dict_order() -> None:
    f = build_oracle("function", function="branin", objectives=["y"], parameters=_ranges("b", "a"))
    # spec order is (b, a): b is x1
    assert f({"a": 2.275, "b": math.pi})["y"] == pytest.approx(BRANIN_MIN, abs=1e-5)


def test_noise_is_seeded_per_oracle() -> None:
    def make(seed: int) -> Any:
        return build_oracle(
            "function",
            function="sphere",
            objectives=["y"],
            parameters=_ranges("a"),
            noise=0.1,
            seed=seed,
        )

    x = {"a": 0.0}
    first, again, other = make(7), make(7), make(8)
    seq = [first(x)["y"] for _ in range(5)]
    assert seq == [again(x)["y"] for _ in range(5)]
    assert seq != [other(x)["y"] for _ in range(5)]
    assert len(set(seq)) == 5 and 0 < np.std(seq) < 0.5


# ---------------------------------------------------------------- EMT


def test_emt_pure_element_mixing_energy_is_zero(emt: Any) -> None:
    for el in ("Cu", "Pt"):
        assert abs(emt({"composition": {el: 1.0}})["e_mix"]) < 1e-6


def test_emt_binaries_have_known_signs(emt: Any) -> None:
    def e(a: str, b: str) -> float:
        return float(emt({"composition": {a: 0.5, b: 0.5}})["e_mix"])

    assert e("Cu", "Pd") < -0.005  # an ordering alloy
    assert e("Cu", "Ag") > 0.03  # immiscible in reality too


def test_emt_is_deterministic_for_a_composition(emt: Any) -> None:
    comp = {"Cu": 0.3, "Au": 0.2, "Pd": 0.5}
    first = emt({"composition": comp})["e_mix"]
    assert emt({"composition": dict(reversed(comp.items()))})["e_mix"] == first
    assert emt({"composition": "Cu3Au2Pd5"})["e_mix"] == pytest.approx(first, abs=1e-12)
    assert emt_mixing_energy({"Pd": 0.5, "Cu": 0.3, "Au": 0.2}) == pytest.approx(first, abs=1e-12)


def test_emt_different_compositions_differ(emt: Any) -> None:
    a = emt({"composition": {"Cu": 0.5, "Au": 0.5}})["e_mix"]
    b = emt({"composition": {"Cu": 0.75, "Au": 0.25}})["e_mix"]
    assert a != b


@pytest.mark.parametrize(
    "fractions, n, expected",
    [
        ([1 / 3, 1 / 3, 1 / 3], 32, [11, 11, 10]),
        ([0.2] * 5, 32, [7, 7, 6, 6, 6]),
        ([0.999, 0.001], 32, [32, 0]),
        ([0.3, 0.7], 10, [3, 7]),
        ([0.0, 1.0, 0.0], 108, [0, 108, 0]),
    ],
)
def test_site_counts_known(fractions: list[float], n: int, expected: list[int]) -> None:
    assert site_counts(fractions, n) == expected


def test_site_counts_sum_and_stay_close_for_awkward_fractions() -> None:
    rng = np.random.default_rng(3)
    for _ in range(200):
        x = rng.dirichlet(np.full(int(rng.integers(2, 7)), 0.3))
        n = int(rng.choice([4, 32, 108, 256]))
        counts = site_counts(list(x), n)
        assert sum(counts) == n
        assert all(abs(c - xi * n) < 1 for c, xi in zip(counts, x, strict=True))
        assert all(c == 0 for c, xi in zip(counts, x, strict=True) if xi == 0)


def test_site_counts_refuse_nonsense() -> None:
    with pytest.raises(ValueError, match="not all 0"):
        site_counts([0.0, 0.0], 32)
    with pytest.raises(ValueError, match=">= 0"):
        site_counts([-0.1, 1.1], 32)


def test_emt_records_the_composition_its_cell_holds() -> None:
    """A 32-atom cell cannot hold Cu0.156 Pd0.844: the result says it computed Cu5 Pd27,
    noise or not, so nobody takes the energy for that of the composition asked for."""
    for noise in (0.0, 0.001):
        f = build_oracle(
            "emt", objectives=["e"], parameters=[_composition("Cu", "Pd")], noise=noise
        )
        out = f({"composition": {"Cu": 0.156, "Pd": 0.844}})
        assert set(out) == {"e"}
        assert out.metadata == {  # type: ignore[attr-defined]
            "simulated_cell": "Cu5 Pd27",
            "simulated_composition": "Cu0.15625 Pd0.84375",
        }
    assert emt_cell({"Cu": 0.2, "Ag": 0.8}, supercell=1) == {"Cu": 1, "Ag": 3}


def test_emt_rejects_foreign_element_in_assignment(emt: Any) -> None:
    with pytest.raises(ValueError, match="Ni is not one of"):
        emt({"composition": {"Ni": 0.5, "Cu": 0.5}})


# ---------------------------------------------------------------- table


def _write(path: Path, text: str) -> Path:
    path.write_text(text.strip() + "\n")
    return path


def test_table_exact_and_nearest(tmp_path: Path) -> None:
    _write(tmp_path / "t.csv", "x,solvent,y,z\n0,water,1,10\n5,water,2,20\n10,ethanol,3,30\n")
    params: list[dict[str, Any]] = [
        {"name": "x", "type": "range", "bounds": [0, 10]},
        {"name": "solvent", "type": "choice", "values": ["water", "ethanol"]},
    ]
    f = build_oracle(
        "table",
        table="t.csv",
        objectives=["y", "z"],
        parameters=params,
        options={"base_dir": str(tmp_path)},
    )
    assert f({"x": 5, "solvent": "water"}) == {"y": 2.0, "z": 20.0}
    assert f({"x": 5.0 * (1 + 1e-12), "solvent": "water"})["y"] == 2.0
    assert f({"x": 3.0, "solvent": "water"})["y"] == 2.0  # nearer 5 than 0
    assert f({"x": 9.0, "solvent": "water"})["y"] == 2.0  # the category outweighs distance
    assert f({"x": 9.0, "solvent": "ethanol"})["y"] == 3.0


def test_table_nearest_off_refuses_unknown_points(tmp_path: Path) -> None:
    table = _write(tmp_path / "t.csv", "x,y\n1,1\n2,4\n")
    f = build_oracle(
        "table",
        table=str(table),
        objectives=["y"],
        parameters=_ranges("x"),
        options={"nearest": False},
    )
    assert f({"x": 2})["y"] == 4.0
    with pytest.raises(ValueError, match=r"no row of t\.csv matches"):
        f({"x": 1.5})


def test_table_composition_as_formula_column(tmp_path: Path) -> None:
    table = _write(tmp_path / "c.csv", "alloy,e\nCu,0\nCuAu,-1\nCu3Au,-2\nAu,0\n")
    f = build_oracle(
        "table",
        table=str(table),
        objectives=["e"],
        parameters=[_composition("Cu", "Au", name="alloy")],
    )
    assert f({"alloy": {"Cu": 0.5, "Au": 0.5}})["e"] == -1.0
    assert f({"alloy": {"Cu": 0.75, "Au": 0.25}})["e"] == -2.0
    assert f({"alloy": {"Cu": 0.8, "Au": 0.2}})["e"] == -2.0  # nearest


def test_table_composition_as_element_columns(tmp_path: Path) -> None:
    table = _write(tmp_path / "c.csv", "Cu,Au,e\n100,0,0\n50,50,-1\n0,100,0\n")
    f = build_oracle(
        "table",
        table=str(table),
        objectives=["e"],
        parameters=[_composition("Cu", "Au")],
    )
    assert f({"composition": {"Cu": 0.5, "Au": 0.5}})["e"] == -1.0  # percentages normalised
    assert f({"composition": {"Cu": 0.9, "Au": 0.1}})["e"] == 0.0


# ---------------------------------------------------------------- refusals


def _table_error(tmp_path: Path, csv_text: str, objectives: list[str], params: Any) -> str:
    table = _write(tmp_path / "bad.csv", csv_text)
    with pytest.raises(OracleConfigError) as info:
        build_oracle("table", table=str(table), objectives=objectives, parameters=params)
    return str(info.value)


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        ({"kind": "dft"}, "unknown oracle kind 'dft'; known kinds: emt, chgnet, function, table"),
        ({"function": "bananas"}, "unknown function 'bananas'; known functions: ackley, branin"),
        ({"function": None}, "needs `function:`"),
        ({"function": "hartmann6"}, "'hartmann6' takes 6 parameters, but the campaign has 2"),
        ({"parameters": _ranges("a")}, "'branin' takes 2 parameters, but the campaign has 1"),
        (
            {"function": "rosenbrock", "parameters": _ranges("a")},
            "'rosenbrock' needs at least 2 parameters",
        ),
        ({"objectives": ["y", "cost"]}, "computes a single value, but the campaign has 2"),
        ({"objectives": []}, "no objectives"),
        ({"noise": -1.0}, "noise must be a finite number >= 0"),
        ({"options": {"nearst": True}}, "unknown option 'nearst' for the function oracle"),
        (
            {"parameters": [*_ranges("a"), {"name": "s", "type": "choice", "values": ["p", "q"]}]},
            "'s' is a choice parameter with non-numeric values",
        ),
        (
            {"parameters": [*_ranges("a"), _composition("Cu", "Au")]},
            "'composition' is a composition parameter",
        ),
    ],
)
def test_function_config_errors(kwargs: dict[str, Any], needle: str) -> None:
    args: dict[str, Any] = {
        "kind": "function",
        "function": "branin",
        "objectives": ["y"],
        "parameters": _ranges("a", "b"),
    }
    args.update(kwargs)
    kind = args.pop("kind")
    with pytest.raises(OracleConfigError) as info:
        build_oracle(kind, **args)
    assert needle in str(info.value)


@pytest.mark.parametrize(
    "params, options, needle",
    [
        ([_composition("Cu", "Fe", "Si")], {}, "cannot compute Fe, Si in 'composition'"),
        (_ranges("a"), {}, "needs exactly one composition parameter (the alloy), found none"),
        (
            [_composition("Cu", "Au", name="p"), _composition("Ag", "Pt", name="q")],
            {},
            "found 'p', 'q'",
        ),
        ([_composition("Cu", "Au")], {"supercell": 9}, "supercell must be a whole number"),
        ([_composition("Cu", "Au")], {"supercell": "2"}, "got '2'"),
        ([_composition("Cu", "Au")], {"relax": "yes"}, "relax must be true or false"),
    ],
)
def test_emt_config_errors(params: Any, options: dict[str, Any], needle: str) -> None:
    with pytest.raises(OracleConfigError) as info:
        build_oracle("emt", objectives=["e"], parameters=params, options=options)
    assert needle in str(info.value)


def test_emt_error_lists_supported_elements() -> None:
    with pytest.raises(OracleConfigError, match="only for Al, Cu, Ag, Au, Ni, Pd, Pt"):
        build_oracle("emt", objectives=["e"], parameters=[_composition("Cu", "W")])


def test_table_missing_file(tmp_path: Path) -> None:
    with pytest.raises(OracleConfigError, match=r"'nope\.csv' not found") as info:
        build_oracle(
            "table",
            table="nope.csv",
            objectives=["y"],
            parameters=_ranges("x"),
            options={"base_dir": str(tmp_path)},
        )
    assert str(tmp_path / "nope.csv") in str(info.value)
    with pytest.raises(OracleConfigError, match="needs `table:`"):
        build_oracle("table", objectives=["y"], parameters=_ranges("x"))


def test_table_lacking_columns(tmp_path: Path) -> None:
    msg = _table_error(tmp_path, "x,y\n1,2\n", ["y"], _ranges("x", "w"))
    assert "no column for parameter 'w'" in msg and "columns: x, y" in msg
    msg = _table_error(tmp_path, "x,y\n1,2\n", ["energy"], _ranges("x"))
    assert "no column for objective 'energy'" in msg
    msg = _table_error(tmp_path, "Cu,y\n1,2\n", ["y"], [_composition("Cu", "Au")])
    assert "no columns for element(s) Au" in msg


def test_table_bad_cells(tmp_path: Path) -> None:
    msg = _table_error(tmp_path, "x,y\n1,2\n2,oops\n", ["y"], _ranges("x"))
    assert "line 3, column 'y': 'oops' is not a number" in msg
    msg = _table_error(
        tmp_path, "alloy,y\nCuNi,2\n", ["y"], [_composition("Cu", "Au", name="alloy")]
    )
    assert "contains Ni" in msg
    msg = _table_error(tmp_path, "x,y\n", ["y"], _ranges("x"))
    assert "no data rows" in msg
