"""The multi-fidelity strategy's candidates: seeded refinements around the best points."""

from __future__ import annotations

from typing import Any

import numpy as np

from loopctl import Campaign
from loopctl.strategies import multifidelity as mf

OPTIMUM = np.array([0.37, 0.61, 0.23, 0.84])


def spec(seed: int) -> dict[str, Any]:
    return {
        "name": "mf-local",
        "seed": seed,
        "space": [{"name": f"x{i}", "type": "range", "bounds": [0, 1]} for i in range(4)],
        "objectives": [{"name": "y", "goal": "minimize"}],
        "fidelities": {
            "levels": [{"name": "lo", "cost": 1}, {"name": "hi", "cost": 5}],
            "target": "hi",
        },
        "budget": {"trials": 100},
    }


def value(p: dict[str, Any], level: str | None) -> float:
    x = np.array([p[f"x{i}"] for i in range(4)])
    return float(((x - OPTIMUM) ** 2).sum()) + (0.2 * x[0] if level == "lo" else 0.0)


def test_local_candidates_refine_the_best_points_beyond_the_sobol_spacing() -> None:
    with Campaign.create(spec(3)) as c:
        for _ in range(14):
            t = c.ask(1)[0]
            c.tell(t.id, {"y": value(t.parameters, t.fidelity)})
        data = c.view.refresh()
        fid = data.spec.fidelities
        assert fid is not None
        model, _ = mf._fit(data, fid, [])
        local = mf._local_candidates(data, fid, model)
        again = mf._local_candidates(data, fid, mf._fit(data, fid, [])[0])
        sobol = mf._candidates(data)

    assert local == again  # seeded: a replay proposes from the same candidates
    at_target = [o for o in data.completed if o.fidelity in (None, "hi")]
    assert len(local) == min(mf.LOCAL_CENTRES, len(at_target)) * mf.LOCAL_PER_CENTRE > 0
    xs = np.array([[r[f"x{i}"] for i in range(4)] for r in local])
    assert xs.min() >= 0.0 and xs.max() <= 1.0
    best = min(at_target, key=lambda o: o.outcomes["y"][0])
    b = np.array([best.parameters[f"x{i}"] for i in range(4)])
    grid = np.array([[r[f"x{i}"] for i in range(4)] for r in sobol])
    nearest_local = np.linalg.norm(xs - b, axis=1).min()
    nearest_sobol = np.linalg.norm(grid - b, axis=1).min()
    # the smallest steps (1 % of a range) put candidates far closer than 1,024 Sobol points do
    assert nearest_local < 0.03 < nearest_sobol


def test_a_proposal_is_the_same_when_made_twice_from_the_same_data() -> None:
    with Campaign.create(spec(5)) as c:
        for _ in range(8):
            t = c.ask(1)[0]
            c.tell(t.id, {"y": value(t.parameters, t.fidelity)})
        data = c.view.refresh()
        first = mf.MultiFidelityStrategy().propose(data, 4)
        second = mf.MultiFidelityStrategy().propose(data, 4)
        shared = [dict(r) for r in mf._candidates(data)]
    assert [(p.parameters, p.fidelity) for p in first.candidates] == [
        (p.parameters, p.fidelity) for p in second.candidates
    ]
    assert first.diagnostics["fidelity"]["chosen"] == second.diagnostics["fidelity"]["chosen"]
    # the local steps refine the target's optimum: the cheap level gets Sobol points only
    cheap = [p.parameters for p in first.candidates if p.fidelity == "lo"]
    assert cheap and all(p in shared for p in cheap)
