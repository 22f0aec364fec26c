"""`method: ax`: Ax's Client rebuilt from the campaign's data, behind loopctl's interface."""

from __future__ import annotations

import math
from typing import Any

import pytest

from loopctl import Campaign
from loopctl.errors import SpecError
from loopctl.spec import parse_spec

pytestmark = pytest.mark.slow

MIXED: list[dict[str, Any]] = [
    {"name": "t", "type": "range", "bounds": [300, 600]},
    {"name": "rate", "type": "range", "bounds": [0.01, 10], "log": True},
    {"name": "layers", "type": "integer", "bounds": [1, 6]},
    {"name": "solvent", "type": "choice", "values": ["water", "ethanol"]},
    {"name": "pressure", "type": "fixed", "value": 1.0},
    {
        "name": "alloy",
        "type": "composition",
        "elements": ["Cu", "Ni", "Pd"],
        "bounds": {"Pd": [0.1, 0.7]},
    },
]


def spec(seed: int = 0, **extra: Any) -> dict[str, Any]:
    return {
        "name": "ax",
        "seed": seed,
        "space": extra.pop("space", MIXED),
        "objectives": extra.pop("objectives", [{"name": "y", "goal": "minimize"}]),
        "budget": {"trials": 20},
        "strategy": {"method": "ax"},
        **extra,
    }


def f(p: dict[str, Any]) -> float:
    return (
        (p["t"] - 450) ** 2 / 1e4
        + math.log10(p["rate"]) ** 2
        + (p["layers"] - 3) ** 2
        + (p["solvent"] != "ethanol")
        + (p["alloy"]["Cu"] - 0.3) ** 2
    )


def test_ax_proposals_are_valid_and_reach_its_model() -> None:
    from loopctl.strategies.ax_backend import AxStrategy

    s = spec(constraints=["alloy.Cu + alloy.Pd <= 0.8"])
    with Campaign.create(s) as c:
        first = c.ask(2)  # Ax's own start: the centre of the space, then Sobol
        nodes = c.store.proposals()[0]["diagnostics"]["generation_nodes"]
        space = c.space
    assert nodes[0] == "CenterOfSearchSpace"
    # Ax's model on the whole space takes 27 s a proposal here (it enumerates the integer
    # and choice levels, each with sum-constrained restarts); without those two, 4 s
    s["space"] = [p for p in MIXED if p["name"] not in ("layers", "solvent")]
    s["strategy"] = {"method": "sobol"}
    with Campaign.create(s) as c:
        for t in c.ask(6):
            c.tell(t.id, {"y": f({"layers": 3, "solvent": "ethanol", **t.parameters})})
        data = c.view.refresh()
    proposal = AxStrategy().propose(data, 1)  # six observations: Ax's model, not its Sobol
    assert proposal.strategy == "ax" and proposal.version.startswith("ax-")
    assert "MBM" in proposal.diagnostics["generation_nodes"]
    chosen = [(data.space, cand.parameters) for cand in proposal.candidates]
    chosen += [(space, t.parameters) for t in first]
    known = {data.space.key(o.parameters) for o in data.completed}
    for sp, p in chosen:
        assert sp.key(sp.validate(p)) == sp.key(p) and p["pressure"] == 1.0
        assert sum(p["alloy"].values()) == pytest.approx(1.0, abs=1e-9)
        assert 0.1 <= p["alloy"]["Pd"] <= 0.7 and p["alloy"]["Cu"] + p["alloy"]["Pd"] <= 0.8 + 1e-9
    assert not known & {data.space.key(cand.parameters) for cand in proposal.candidates}


def test_ax_is_deterministic_for_the_same_seed_and_data() -> None:
    runs = []
    for _ in range(2):
        with Campaign.create(spec(7, space=MIXED[:3])) as c:
            for _ in range(4):
                for t in c.ask(2):
                    c.tell(t.id, {"y": (t.parameters["t"] - 400) ** 2 / 1e4})
            runs.append([t["parameters"] for t in c.trials()])
    assert runs[0] == runs[1]


def test_ax_two_objectives_with_an_outcome_constraint() -> None:
    objectives = [{"name": "a", "goal": "minimize"}, {"name": "b", "goal": "minimize"}]
    s = spec(space=MIXED[:2], objectives=objectives, outcome_constraints=["c >= 0"])
    with Campaign.create(s) as c:
        while len(c.trials()) < 8:
            for t in c.ask(2):
                x = (t.parameters["t"] - 300) / 300
                c.tell(t.id, {"a": x, "b": (1 - x) ** 2, "c": x - 0.2})
        nodes = [n for p in c.store.proposals() for n in p["diagnostics"]["generation_nodes"]]
    assert "MBM" in nodes


def test_ax_refuses_pools() -> None:
    with pytest.raises(SpecError, match="Ax's Client cannot search a pool"):
        parse_spec(spec(space=MIXED[:1], pool={"rows": [{"t": 300.0}, {"t": 400.0}]}))
