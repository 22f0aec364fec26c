"""The surrogates for lab data: the forest, the leave-one-out choice, and their replay."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from botorch.models import SingleTaskGP

from loopctl import Campaign
from loopctl.strategies import selection, surrogate
from loopctl.strategies.forest import ForestModel
from tests.conftest import loopctl

Objective = Callable[[dict[str, Any]], float]


def grid_spec(
    seed: int, initial: int, surrogate_kind: str = "auto", select_by: str = "loo"
) -> dict[str, Any]:
    rows = [{"a": a, "b": b} for a in range(10) for b in range(10)]
    return {
        "name": "surrogates",
        "seed": seed,
        "space": [{"name": n, "type": "integer", "bounds": [0, 9]} for n in "ab"],
        "objectives": [{"name": "y", "goal": "maximize"}],
        "budget": {"trials": 60},
        "pool": {"rows": rows},
        "strategy": {
            "method": "auto",
            "initial_trials": initial,
            "options": {"surrogate": surrogate_kind, "select_by": select_by},
        },
    }


def smooth(p: dict[str, Any]) -> float:
    return float(np.sin(0.5 * p["a"]) + np.cos(0.4 * p["b"]))


def plateau(p: dict[str, Any]) -> float:
    """A step in two parameters at once: a corner no smooth kernel draws well."""
    return float(10.0 * (p["a"] >= 5) * (p["b"] >= 3) + 0.01 * p["b"])


def held_out_error(c: Campaign, kind: str, fn: Objective) -> float:
    """How well a surrogate fitted to the campaign predicts the pool rows it has not seen."""
    data = c.view.refresh()
    tr = surrogate.training_data(data, [])
    model: Any = (
        ForestModel(tr.x, tr.y, data.seed)
        if kind == "forest"
        else surrogate.fit_columns(data, tr, [0], [], kind)
    )
    seen = {data.space.key(o.parameters) for o in data.completed}
    unseen = [r for r in data.space.pool if data.space.key(r) not in seen]
    x = surrogate.tensor(data.space.encode_many(unseen))
    with torch.no_grad():
        predicted = model.posterior(x).mean[:, 0].numpy()
    truth = np.array([fn(r) for r in unseen])
    return float(np.sqrt(np.mean((predicted - truth) ** 2)))


@pytest.mark.slow
@pytest.mark.parametrize("rule", ["loo", "prequential"])
@pytest.mark.parametrize(("fn", "expected"), [(smooth, "gp"), (plateau, "forest")])
def test_auto_chooses_the_surrogate_that_predicts_better(
    fn: Objective, expected: str, rule: str
) -> None:
    for seed in range(2):
        c = Campaign.create(grid_spec(seed, initial=40, select_by=rule))
        for t in c.ask(40):
            c.tell(t.id, {"y": fn(t.parameters)})
        c.ask(1)
        choice = c.store.proposals()[-1]["diagnostics"]["surrogate"]
        assert choice["chosen"] == expected, choice
        assert set(choice["scores"]) == {"gp", "forest"}
        said = "leave-one-out" if rule == "loo" else "one-step-ahead log density per point"
        assert said in choice["reason"], choice
        decided_by = selection.RULES[rule]
        assert all(decided_by in v for v in choice["scores"].values())
        other = "forest" if expected == "gp" else "gp"
        # the choice is right by a measure it never saw: the rest of the pool
        assert held_out_error(c, expected, fn) < held_out_error(c, other, fn)
        c.close()


def test_gp_leave_one_out_equals_refitting_without_the_point() -> None:
    c = Campaign.create(grid_spec(0, initial=12, surrogate_kind="gp"))
    for t in c.ask(12):
        c.tell(t.id, {"y": smooth(t.parameters)})
    data = c.view.refresh()
    tr = surrogate.training_data(data, [])
    gp: Any = surrogate.fit_columns(data, tr, [0], [])
    mean, var = selection.gp_leave_one_out(gp)
    for i in (0, 7):
        keep = [j for j in range(len(tr.y)) if j != i]
        reduced: Any = SingleTaskGP(
            tr.x[keep],
            (tr.y[keep] - gp.outcome_transform.means) / gp.outcome_transform.stdvs,
            input_transform=gp.input_transform,
            outcome_transform=None,  # the targets are already in the full model's units
        )
        state = {k: v for k, v in gp.state_dict().items() if "transform" not in k}
        reduced.load_state_dict(state, strict=False)
        reduced.eval()
        with torch.no_grad():
            post = reduced.posterior(tr.x[i : i + 1], observation_noise=True)
        std = float(gp.outcome_transform.stdvs)
        assert mean[i] == pytest.approx(float(post.mean) * std + float(gp.outcome_transform.means))
        assert var[i] == pytest.approx(float(post.variance) * std**2)


def test_gp_one_step_ahead_equals_conditioning_on_the_earlier_points_only() -> None:
    c = Campaign.create(grid_spec(0, initial=12, surrogate_kind="gp"))
    for t in c.ask(12):
        c.tell(t.id, {"y": smooth(t.parameters)})
    data = c.view.refresh()
    tr = surrogate.training_data(data, [])
    gp: Any = surrogate.fit_columns(data, tr, [0], [])
    mean, var = selection.gp_one_step_ahead(gp, 5)
    assert mean.shape == var.shape == (5,)
    std, shift = float(gp.outcome_transform.stdvs), float(gp.outcome_transform.means)
    for k, i in enumerate(range(7, 12)):
        earlier: Any = SingleTaskGP(
            tr.x[:i],
            (tr.y[:i] - shift) / std,
            input_transform=gp.input_transform,
            outcome_transform=None,
        )
        state = {k2: v for k2, v in gp.state_dict().items() if "transform" not in k2}
        earlier.load_state_dict(state, strict=False)
        earlier.eval()
        with torch.no_grad():
            post = earlier.posterior(tr.x[i : i + 1], observation_noise=True)
        assert mean[k] == pytest.approx(float(post.mean) * std + shift)
        assert var[k] == pytest.approx(float(post.variance) * std**2)
    c.close()


def test_forest_spread_is_calibrated_on_its_out_of_bag_errors() -> None:
    rng = np.random.default_rng(0)
    x = torch.as_tensor(rng.uniform(size=(60, 2)))
    y = (torch.sin(6 * x[:, :1]) + 0.3 * torch.as_tensor(rng.normal(size=(60, 1)))).double()
    forest = ForestModel(x, y, seed=3)
    from loopctl.strategies.forest import out_of_bag

    mean, var = out_of_bag(forest)
    z2 = (y.numpy() - mean) ** 2 / var
    assert 0.5 < float(z2.mean()) < 1.5  # one standard deviation means what it says
    post = forest.posterior(x[:5].unsqueeze(1))  # batch x 1 x d, as acquisitions ask
    assert post.mean.shape == (5, 1, 1) and bool((post.variance > 0).all())
    again = ForestModel(x, y, seed=3).posterior(x[:5]).mean
    assert torch.equal(again, forest.posterior(x[:5]).mean)  # seeded: a replay agrees


@pytest.mark.slow
@pytest.mark.parametrize("rule", ["loo", "prequential"])
def test_replay_reproduces_proposals_of_the_new_surrogates(tmp_path: Path, rule: str) -> None:
    """auto picks the GP below ten observations and the forest on this plateau after."""
    path = tmp_path / "auto.db"
    chosen: list[Any] = []
    with Campaign.create(grid_spec(0, initial=4, select_by=rule), path) as c:
        for _ in range(14):  # batches of two: the forest believes its pending point
            for t in c.ask(2):
                c.tell(t.id, {"y": plateau(t.parameters)})
            chosen = [
                p["diagnostics"].get("surrogate", {}).get("chosen") for p in c.store.proposals()
            ]
            if "forest" in chosen and "gp" in chosen:
                break  # which round it happens in depends on the acquisition, not the choice
    assert "forest" in chosen and "gp" in chosen, chosen
    report = json.loads(loopctl("audit", str(path), "--replay", "--json").stdout)
    assert report["ok"], report["replay"]
    assert [r["ok"] for r in report["replay"]] == [True] * len(report["replay"])


@pytest.mark.parametrize("choice_param", [False, True])
def test_average_prior_mean_reverts_to_the_observations_average_far_from_them(
    choice_param: bool,
) -> None:
    """Observed only in one corner, a fitted constant may sit anywhere; ``average`` must
    predict the observations' average at the far corner (unwarped, so in their own units)."""
    spec = grid_spec(0, initial=16, surrogate_kind="gp")  # every ask a Sobol point
    spec["strategy"]["options"] |= {"prior_mean": "average", "warp_outcomes": False}
    spec["pool"] = None
    spec.pop("pool")
    spec["space"] = [{"name": n, "type": "range", "bounds": [0.0, 1.0]} for n in "ab"]
    if choice_param:
        spec["space"].append({"name": "c", "type": "choice", "values": ["u", "v"]})
    corner = [(a / 20, b / 20) for a in range(4) for b in range(4)]
    with Campaign.create(spec, None) as c:
        for _ in corner:
            t = c.ask(1)[0]
            c.tell(t.id, {"y": 0.0})  # values are replaced below: only the inputs matter
        data = c.view.refresh()
    params = [{"a": a, "b": b} | ({"c": "u"} if choice_param else {}) for a, b in corner]
    values = [float(3.0 + np.sin(9 * a) + b) for a, b in corner]
    completed = tuple(
        dataclasses.replace(o, parameters=p, outcomes={"y": (v, None)})
        for o, p, v in zip(data.completed, params, values, strict=True)
    )
    data = dataclasses.replace(data, completed=completed)
    notes: list[str] = []
    model, tr, _ = surrogate.fit(data, notes, 1)
    assert "mean_constant" not in surrogate.hyperparameters(model, tr)
    far = {"a": 1.0, "b": 1.0} | ({"c": "v"} if choice_param else {})
    mean, _sd = surrogate.predict(data, model, tr, [far])[0]["y"]
    assert mean == pytest.approx(np.mean(values), abs=0.1 * np.ptp(values))
