"""`method: nsga2`: NSGA-II over the GPs, batch by hypervolume contribution."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from botorch.test_functions.multi_objective import BraninCurrin

from loopctl import Campaign
from loopctl.pareto import hypervolume_2d

pytestmark = pytest.mark.slow
UNIT = [
    {"name": "x1", "type": "range", "bounds": [0, 1]},
    {"name": "x2", "type": "range", "bounds": [0, 1]},
]
TWO = [{"name": "a", "goal": "minimize"}, {"name": "b", "goal": "minimize"}]


def spec(method: str, seed: int = 0, **extra: Any) -> dict[str, Any]:
    return {
        "name": "n",
        "seed": seed,
        "space": extra.pop("space", UNIT),
        "objectives": extra.pop("objectives", TWO),
        "budget": {"trials": 30},
        "strategy": {"method": method, "initial_trials": extra.pop("initial", 10)},
        **extra,
    }


def test_nsga2_beats_sobol_on_branin_currin() -> None:
    f = BraninCurrin()
    hv: dict[str, list[float]] = {"nsga2": [], "sobol": []}
    for method in hv:
        for seed in range(3):
            with Campaign.create(spec(method, seed)) as c:
                ys: list[list[float]] = []
                while len(ys) < 22:
                    for t in c.ask(10 if not ys else 4):
                        y = f(torch.tensor([[t.parameters["x1"], t.parameters["x2"]]]))[0].tolist()
                        ys.append(y)
                        c.tell(t.id, {"a": y[0], "b": y[1]})
                last = c.store.proposals()[-1]
            hv[method].append(hypervolume_2d(ys, (300.0, 15.0)))
            assert last["strategy"] == method
            if method == "nsga2":
                assert "hypervolume contribution" in last["diagnostics"]["acquisition"]
    assert np.median(hv["nsga2"]) > np.median(hv["sobol"]) * 1.1


def test_nsga2_compositions_are_exact_and_never_repeat() -> None:
    space = [
        {
            "name": "c",
            "type": "composition",
            "elements": ["Cu", "Ni", "Pd"],
            "bounds": {"Cu": [0.1, 0.6]},
        }
    ]
    with Campaign.create(spec("nsga2", space=space, initial=5)) as c:
        for _ in range(4):
            for t in c.ask(3):
                fr = t.parameters["c"]
                c.tell(t.id, {"a": fr["Cu"], "b": (fr["Ni"] - 0.5) ** 2 + fr["Pd"] / 3})
        trials = c.trials()
        assert c.store.proposals()[-1]["strategy"] == "nsga2"
    keys = {tuple(round(v, 9) for v in t["parameters"]["c"].values()) for t in trials}
    assert len(keys) == len(trials) == 12
    for row in trials:
        fr = row["parameters"]["c"]
        assert abs(sum(fr.values()) - 1.0) <= 1e-9 and 0.1 <= fr["Cu"] <= 0.6


def test_nsga2_is_deterministic_and_handles_five_objectives() -> None:
    objectives = [{"name": f"f{i}", "goal": "maximize"} for i in range(5)]
    runs = []
    for _ in range(2):
        with Campaign.create(spec("nsga2", objectives=objectives, initial=6)) as c:
            for _ in range(3):
                for t in c.ask(3):
                    x = np.array([t.parameters["x1"], t.parameters["x2"]])
                    c.tell(t.id, {f"f{i}": float(-((x - i / 5) ** 2).sum()) for i in range(5)})
            runs.append([t["parameters"] for t in c.trials()])
    assert runs[0] == runs[1] and len(runs[0]) == 9
