"""Campaign-file sections for linear constraints, outcome constraints and pools, and
how the space encodes choices, checks constraints and restricts itself to a pool."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from loopctl import Campaign
from loopctl.errors import SpecError, ValidationError
from loopctl.space import Space
from loopctl.spec import parse_spec

BOX = [
    {"name": "a", "type": "range", "bounds": [0, 10]},
    {"name": "b", "type": "range", "bounds": [-1, 1]},
    {"name": "n", "type": "integer", "bounds": [1, 5]},
]


def make(**extra: Any) -> dict[str, Any]:
    return {
        "name": "t",
        "space": extra.pop("space", BOX),
        "objectives": [{"name": "y", "goal": "minimize"}],
        "budget": {"trials": 10},
        **extra,
    }


def problems(data: dict[str, Any]) -> str:
    with pytest.raises(SpecError) as err:
        parse_spec(data)
    return str(err.value)


def test_linear_constraints_parse_to_terms() -> None:
    s = parse_spec(make(constraints=["a + 2*b - 0.5 n <= 3", "-a >= -8", "2.5e-1*a + b >= 0"]))
    c = s.parameter_constraints
    assert (
        c[0].terms == (("a", 1.0), ("b", 2.0), ("n", -0.5)) and c[0].op == "<=" and c[0].bound == 3
    )
    assert c[1].terms == (("a", -1.0),) and c[1].op == ">="
    assert c[2].terms == (("a", 0.25), ("b", 1.0))
    assert c[0].slack({"a": 1.0, "b": 0.5, "n": 2}) == pytest.approx(3 - (1 + 1 - 1))


@pytest.mark.parametrize(
    ("constraint", "message"),
    [
        ("a + c <= 1", "'c' is not a parameter"),
        ("a + b", "expected one comparison"),
        ("a + b <= x", "is not a number"),
        ("a ** 2 <= 1", "cannot read the term"),
        ("a < 1", "expected one comparison"),
    ],
)
def test_bad_linear_constraints_are_named(constraint: str, message: str) -> None:
    text = problems(make(constraints=[constraint]))
    assert "constraints[0]" in text and message in text


def test_log_and_choice_parameters_cannot_be_constrained() -> None:
    space = [
        {"name": "r", "type": "range", "bounds": [1, 100], "log": True},
        {"name": "s", "type": "choice", "values": ["x", "y"]},
    ]
    assert "log scale" in problems(make(space=space, constraints=["r <= 50"]))
    assert "choice parameter" in problems(make(space=space, constraints=["2*s <= 1"]))


def test_space_checks_constraints_in_parameter_units() -> None:
    s = parse_spec(make(constraints=["a + 10*b <= 5"]))
    space = Space.for_spec(s)
    assert space.violated({"a": 5.0, "b": 0.0, "n": 1}) == []
    assert space.violated({"a": 5.0, "b": 0.1, "n": 1}) == ["a + 10*b <= 5"]
    with pytest.raises(ValidationError, match="violates the constraint 'a \\+ 10\\*b <= 5'"):
        space.validate({"a": 9.0, "b": 0.5, "n": 1})
    # the encoded form (BoTorch's sum a x >= r) agrees with the parameter form
    c = space.inequalities[0]
    for values in ({"a": 2.0, "b": 0.2, "n": 3}, {"a": 8.0, "b": 0.9, "n": 3}):
        x = space.encode(values)
        lhs = sum(a * x[i] for i, a in zip(c.indices, c.coefficients, strict=True))
        assert (lhs >= c.rhs) == (not space.violated(values))


def test_composition_fractions_can_be_constrained() -> None:
    comp = [{"name": "c", "type": "composition", "elements": ["Cu", "Ni", "Pd"]}]
    s = parse_spec(make(space=comp, constraints=["c.Cu + c.Ni <= 0.4"]))
    space = Space.for_spec(s)
    assert space.violated({"c": {"Cu": 0.3, "Ni": 0.2, "Pd": 0.5}}) == ["c.Cu + c.Ni <= 0.4"]
    assert "'c.Au' is not a parameter" in problems(make(space=comp, constraints=["c.Au <= 1"]))


def test_sobol_and_gp_candidates_satisfy_the_constraints() -> None:
    comp = [
        {"name": "c", "type": "composition", "elements": ["Cu", "Ni", "Pd"]},
        {"name": "t", "type": "range", "bounds": [0, 1]},
    ]
    spec = make(
        space=comp, constraints=["c.Cu + c.Ni <= 0.4", "t - c.Pd >= -0.5"], budget={"trials": 12}
    )
    spec["strategy"] = {"initial_trials": 5}
    with Campaign.create(spec) as c:
        for _ in range(4):
            for t in c.ask(2):
                p = t.parameters
                c.tell(t.id, {"y": (p["c"]["Cu"] - 0.3) ** 2 + (p["t"] - 0.2) ** 2})
        trials = c.trials()
        strategies = {p["strategy"] for p in c.store.proposals()}
    assert "botorch" in strategies
    space = c.space
    for row in trials:
        p = row["parameters"]
        assert space.violated(p) == [], p
        assert sum(p["c"].values()) == pytest.approx(1.0, abs=1e-9)


def test_a_composition_and_a_choice_are_searched_together() -> None:
    """The projected composition search with starts spread over the choice's levels."""
    space: list[dict[str, Any]] = [
        {"name": "c", "type": "composition", "elements": ["Fe", "Ni", "Co"]},
        {"name": "phase", "type": "choice", "values": ["fcc", "bcc", "hcp"]},
    ]
    space[0]["bounds"] = {"Fe": [0.1, 0.8]}
    penalty = {"fcc": 0.2, "bcc": 0.0, "hcp": 0.4}
    spec = make(space=space, budget={"trials": 14}, seed=1)
    spec["strategy"] = {"initial_trials": 4}
    with Campaign.create(spec) as c:
        for _ in range(7):
            for t in c.ask(2):
                x = t.parameters
                y = (x["c"]["Fe"] - 0.5) ** 2 + (x["c"]["Ni"] - 0.3) ** 2 + penalty[x["phase"]]
                c.tell(t.id, {"y": y})
        trials = c.trials()
    for row in trials:
        fractions = row["parameters"]["c"]
        assert sum(fractions.values()) == pytest.approx(1.0, abs=1e-9)
        assert 0.1 <= fractions["Fe"] <= 0.8
    later = [row["parameters"]["phase"] for row in trials[6:]]
    assert later.count("bcc") >= 6, later


def test_infeasible_constraints_give_a_clear_error() -> None:
    with (
        Campaign.create(make(constraints=["a >= 9", "a <= 1"])) as c,
        pytest.raises(ValueError, match=r"no point of .* satisfies the constraints"),
    ):
        c.ask(1)


def test_a_constrained_campaign_asked_one_at_a_time_starts_at_its_centre() -> None:
    """The centre fills the first batch of one; the initial design's draw of the rest is
    then empty, which is no sign of infeasible constraints (it used to raise)."""
    with Campaign.create(make(constraints=["a + 2*b <= 9"], seed=5)) as c:
        first = c.ask(1)
        assert len(first) == 1
        c.tell(first[0].id, {"y": 1.0})
        second = c.ask(1)
        assert len(second) == 1 and second[0].parameters != first[0].parameters
    assert c.space.centre() == first[0].parameters
    assert c.space.violated(second[0].parameters) == []


def test_outcome_constraints_parse_and_define_what_a_result_reports() -> None:
    s = parse_spec(
        make(outcome_constraints=["cost <= 5", {"name": "yield", "op": ">=", "bound": 0.5}])
    )
    assert [(c.name, c.op, c.bound) for c in s.outcome_constraints] == [
        ("cost", "<=", 5.0),
        ("yield", ">=", 0.5),
    ]
    assert s.metric_names == ("y", "cost", "yield")
    assert "expected 'name >= number'" in problems(make(outcome_constraints=["cost < 5"]))
    with Campaign.create(make(outcome_constraints=["cost <= 5"])) as c:
        t = c.ask(1)[0]
        with pytest.raises(ValidationError, match=r"outcomes\.cost: missing"):
            c.tell(t.id, {"y": 1.0})
        c.tell(t.id, {"y": 1.0, "cost": 9.0})  # infeasible: recorded, but not the best
        t2 = c.ask(1)[0]
        c.tell(t2.id, {"y": 2.0, "cost": 1.0})
        best = c.best()
        assert best is not None and best["trial_id"] == t2.id


def test_choices_are_one_categorical_column() -> None:
    s = parse_spec(make(space=[*BOX, {"name": "s", "type": "choice", "values": ["p", "q", "r"]}]))
    space = Space.for_spec(s)
    assert space.cat_dims == (3,) and list(space.bounds[:, 3]) == [0.0, 2.0]
    assert space.encode({"a": 1.0, "b": 0.0, "n": 2, "s": "r"})[3] == 2.0
    assert space.decode(np.array([0.5, 0.5, 0.5, 0.6]))["s"] == "q"


# ---------------------------------------------------------------------- pools


def write_pool(tmp: Path, rows: list[str]) -> Path:
    path = tmp / "pool.csv"
    path.write_text("A content (%),B,label\n" + "\n".join(rows) + "\n", encoding="utf-8-sig")
    return path


POOL_SPACE = [
    {"name": "a", "type": "range", "bounds": [0, 100]},
    {"name": "b", "type": "range", "bounds": [0, 1]},
    {"name": "label", "type": "choice", "values": ["x", "y"]},
]


def test_pool_from_csv_with_column_mapping(tmp_path: Path) -> None:
    path = write_pool(tmp_path, ["10,0.5,x", "20,0.25,y", "30,0.75,x"])
    s = parse_spec(
        make(
            space=POOL_SPACE, pool={"file": str(path), "columns": {"a": "A content (%)", "b": "B"}}
        )
    )
    assert s.pool is not None and len(s.pool.rows) == 3
    space = Space.for_spec(s)
    assert space.in_pool({"a": 20.0, "b": 0.25, "label": "y"}) == 1
    with pytest.raises(ValidationError, match="not one of the 3 pool candidates"):
        space.validate({"a": 20.0, "b": 0.25, "label": "x"})
    # the stored spec carries the rows: it no longer needs the file
    path.unlink()
    again = parse_spec(s.raw)
    assert again.pool is not None and again.pool.rows == s.pool.rows


def test_pool_problems_name_the_row(tmp_path: Path) -> None:
    path = write_pool(tmp_path, ["10,0.5,x", "200,0.25,y", "10,0.5,x"])
    text = problems(
        make(
            space=POOL_SPACE, pool={"file": str(path), "columns": {"a": "A content (%)", "b": "B"}}
        )
    )
    assert "pool row 3.a: 200 is outside the bounds" in text
    assert "pool row 4: repeats candidate 1" in text
    assert "cannot read" in problems(make(space=POOL_SPACE, pool={"file": "/nonexistent.csv"}))
    assert "needs a `pool`" in problems(make(space=[{"name": "f", "type": "formula"}]))


def test_pool_campaign_never_reproposes_and_ends_when_used_up(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rows = [
        {"a": float(a), "b": float(b), "label": str(lab)}
        for a, b, lab in zip(
            rng.integers(0, 100, 40),
            rng.random(40).round(3),
            rng.choice(["x", "y"], 40),
            strict=True,
        )
    ]
    rows = list({(r["a"], r["b"], r["label"]): r for r in rows}.values())
    spec = make(space=POOL_SPACE, pool={"rows": rows}, budget={"trials": 100})
    spec["strategy"] = {"initial_trials": 4}
    seen = []
    with Campaign.create(spec) as c:
        while True:
            batch = c.ask(3)
            if not batch:
                break
            for t in batch:
                p = t.parameters
                seen.append((p["a"], p["b"], p["label"]))
                c.tell(t.id, {"y": (p["a"] - 37) ** 2 / 100 + p["b"] + (p["label"] == "y")})
        strategies = [p["strategy"] for p in c.store.proposals()]
    assert len(seen) == len(set(seen)) == len(rows)  # every row once, then nothing left
    assert set(seen) == {(r["a"], r["b"], r["label"]) for r in rows}
    assert "botorch" in strategies


def test_formula_pool_is_featurised_and_searched() -> None:
    formulas = [
        "NaCl",
        "KCl",
        "LiF",
        "MgO",
        "CaO",
        "ZrO2",
        "TiO2",
        "Fe2O3",
        "Al2O3",
        "SiO2",
        "GaAs",
        "InP",
        "ZnS",
        "CdTe",
        "CuO",
        "NiO",
    ]
    target = {f: i for i, f in enumerate(formulas)}  # a made-up property to minimise
    spec = make(
        space=[{"name": "compound", "type": "formula"}],
        pool={"rows": [{"compound": f} for f in formulas]},
        strategy={"initial_trials": 4},
    )
    with Campaign.create(spec) as c:
        space = c.space
        assert space.dim == 28 and (space.bounds[1] > space.bounds[0]).all()
        for _ in range(4):
            for t in c.ask(2):
                c.tell(t.id, {"y": float(target[t.parameters["compound"]])})
        proposals = c.store.proposals()
        picked = [t["parameters"]["compound"] for t in c.trials()]
    assert len(set(picked)) == 8 and set(picked) <= set(formulas)
    assert proposals[-1]["strategy"] == "botorch"
    assert "pool" in proposals[-1]["diagnostics"]["auto"]["reason"]


def test_the_builtin_oracle_cannot_measure_constrained_outcomes() -> None:
    text = problems(
        make(oracle={"kind": "function", "function": "sphere"}, outcome_constraints=["c >= 1"])
    )
    assert "the built-in oracle computes only the objectives, not 'c'" in text


def test_a_fresh_campaign_starts_at_the_centre_of_its_space() -> None:
    space = [
        {"name": "t", "type": "range", "bounds": [300, 600]},
        {"name": "rate", "type": "range", "bounds": [0.01, 100], "log": True},
        {"name": "n", "type": "integer", "bounds": [1, 5]},
        {"name": "solvent", "type": "choice", "values": ["water", "ethanol", "dmf"]},
        {
            "name": "alloy",
            "type": "composition",
            "elements": ["Cu", "Ni", "Pd"],
            "bounds": {"Pd": [0.1, 0.7]},
        },
    ]
    with Campaign.create(make(space=space)) as c:
        first, *rest = c.ask(3)
    assert first.parameters["t"] == 450 and first.parameters["n"] == 3
    assert first.parameters["rate"] == pytest.approx(1.0)  # the geometric middle
    assert first.parameters["solvent"] == "ethanol"
    assert first.parameters["alloy"] == pytest.approx({"Cu": 0.3, "Ni": 0.3, "Pd": 0.4})
    assert all(r.parameters != first.parameters for r in rest)

    # one integer with two levels: the rest of the first batch must not repeat the centre
    with Campaign.create(make(space=[{"name": "n", "type": "integer", "bounds": [1, 2]}])) as c:
        assert sorted(t.parameters["n"] for t in c.ask(2)) == [1, 2]
    # the centre breaks the constraint, or the option is off: Sobol from the first trial
    for extra in (
        {"constraints": ["a + b >= 6"]},
        {"strategy": {"options": {"center_point": False}}},
    ):
        with Campaign.create(make(**extra)) as c:
            (t,) = c.ask()
            assert t.parameters["a"] != 5.0
            reason = c.store.proposals()[0]["diagnostics"]["auto"]["reason"]
            assert "centre" not in reason
