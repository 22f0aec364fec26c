"""The `fidelities` section and the budget's `cost`: parsed, and every mistake named."""

from __future__ import annotations

import pytest

from loopctl.errors import SpecError
from loopctl.spec import parse_spec_text

BASE = """
name: mf
space:
  - {name: x, type: range, bounds: [0, 1]}
objectives:
  - {name: y, goal: minimize}
"""

GOOD = (
    BASE
    + """
fidelities:
  levels: [{name: emt, cost: 1}, {name: chgnet, cost: 20}]
  target: chgnet
budget: {trials: 100, cost: 400}
"""
)


def test_fidelities_parse() -> None:
    spec = parse_spec_text(GOOD)
    assert spec.fidelities is not None
    assert spec.fidelities.names == ("emt", "chgnet")
    assert spec.fidelities.target == "chgnet"
    assert spec.fidelities.cost("chgnet") == 20.0
    assert spec.fidelities.cheapest == "emt"
    assert spec.budget.cost == 400.0


def test_no_fidelities_is_none() -> None:
    spec = parse_spec_text(BASE + "budget: {trials: 3}\n")
    assert spec.fidelities is None and spec.budget.cost is None


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        (
            "fidelities: {levels: [{name: a, cost: 1}, {name: b, cost: 2}], target: c}\n"
            "budget: {trials: 5}",
            "fidelities.target: 'c' is not one of the levels (a, b)",
        ),
        (
            "fidelities: {levels: [{name: a, cost: 1}], target: a}\nbudget: {trials: 5}",
            "fidelities.levels: must be a list of at least two levels (name, cost), got a list of",
        ),
        (
            "fidelities: {levels: [{name: a, cost: 1}, {name: b, cost: -2}], target: a}\n"
            "budget: {trials: 5}",
            "fidelities.levels[1].cost:",
        ),
        (
            "fidelities: {levels: [{name: a, cost: 1}, {name: a, cost: 2}], target: a}\n"
            "budget: {trials: 5}",
            "fidelities.levels[1].name: 'a' names two levels",
        ),
        (
            "fidelities: {levels: [{name: a}, {name: b, cost: 2}], target: a}\nbudget: {trials: 5}",
            "fidelities.levels[0].cost:",
        ),
        (
            "fidelities: {levels: [{name: a, cost: 1, speed: 3}, {name: b, cost: 2}], target: a}\n"
            "budget: {trials: 5}",
            "fidelities.levels[0].speed: unknown field",
        ),
        ("fidelities: {target: a}\nbudget: {trials: 5}", "fidelities.levels: is required"),
        ("budget: {trials: 5, cost: 10}", "budget.cost: needs a `fidelities` section"),
        (
            "fidelities: {levels: [{name: a, cost: 3}, {name: b, cost: 5}], target: b}\n"
            "budget: {trials: 5, cost: 2}",
            "budget.cost: 2 is less than the cheapest level's cost (3)",
        ),
        (
            "fidelities: {levels: [{name: a, cost: 3}, {name: b, cost: 5}], target: b}\n"
            "budget: {trials: 5}\nstrategy: sobol",
            "strategy.method: sobol cannot choose among fidelities",
        ),
    ],
)
def test_mistakes_are_named(section: str, expected: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec_text(BASE + section)
    assert expected in str(info.value)


def test_the_example_campaign_validates_and_names_its_levels() -> None:
    from tests.conftest import CAMPAIGNS, loopctl

    out = loopctl("validate", str(CAMPAIGNS / "alloy-multifidelity.yaml")).stdout
    assert "fidelities: emt (cost 1), chgnet (cost 20); the objective is judged at chgnet" in out
    assert "budget: 60 trials, cost 400" in out
