"""The GP strategy: better than Sobol, feasible, deterministic, robust to poor data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest

from loopctl.space import Space
from loopctl.spec import Spec, parse_spec
from loopctl.strategies.base import CampaignData, Observation
from loopctl.strategies.botorch_gp import BotorchStrategy
from loopctl.strategies.sobol import SobolStrategy
from tests.specs import branin_fn as branin

pytestmark = pytest.mark.slow


def spec(seed: int = 0, **extra: Any) -> Spec:
    return parse_spec(
        {
            "name": "t",
            "seed": seed,
            "space": extra.pop(
                "space",
                [
                    {"name": "x1", "type": "range", "bounds": [-5, 10]},
                    {"name": "x2", "type": "range", "bounds": [0, 15]},
                ],
            ),
            "objectives": [{"name": "y", "goal": "minimize"}],
            "budget": {"trials": 30},
            **extra,
        }
    )


def data(
    s: Spec, obs: list[tuple[dict[str, Any], float]], pending: tuple[Any, ...] = (), index: int = 0
) -> CampaignData:
    return CampaignData(
        spec=s,
        space=Space(s.space),
        completed=tuple(Observation(f"T{i}", p, {"y": (v, None)}) for i, (p, v) in enumerate(obs)),
        failed=(),
        pending=pending,
        proposal_index=index,
        sobol_drawn=0,
    )


def run(s: Spec, n_init: int, n_total: int, model: bool) -> float:
    obs: list[tuple[dict[str, Any], float]] = []
    sobol, gp = SobolStrategy(), BotorchStrategy()
    drawn = 0
    while len(obs) < n_total:
        d = data(s, obs, index=len(obs))
        d = CampaignData(**{**d.__dict__, "sobol_drawn": drawn})
        strat = gp if model and len(obs) >= n_init else sobol
        p = strat.propose(d, 1)
        drawn += p.sobol_drawn
        x = p.candidates[0].parameters
        obs.append((x, branin(x["x1"], x["x2"])))
    return min(v for _, v in obs)


def test_gp_beats_sobol_on_branin() -> None:
    gp = [run(spec(seed), 5, 18, True) for seed in range(3)]
    sobol = [run(spec(seed), 5, 18, False) for seed in range(3)]
    assert sum(g < s for g, s in zip(gp, sobol, strict=True)) >= 2, (gp, sobol)
    assert float(np.median(gp)) < 1.5, gp  # the optimum is 0.398


def test_composition_batch_is_feasible_and_distinct() -> None:
    space = [
        {
            "name": "c",
            "type": "composition",
            "elements": ["Cu", "Pd", "Au", "Pt"],
            "bounds": {"Cu": [0.1, 0.6], "Au": [0.0, 0.3]},
        }
    ]
    s = spec(space=space)
    rng = np.random.default_rng(0)
    sp = Space(s.space)
    obs = [
        (p := sp.from_unit(rng.random(4)), float(p["c"]["Cu"] - p["c"]["Pd"] ** 2))
        for _ in range(8)
    ]
    pending = (sp.from_unit(rng.random(4)),)
    prop = BotorchStrategy().propose(data(s, obs, pending), 3)
    keys = {sp.key(c.parameters) for c in prop.candidates}
    assert len(keys) == 3 and not keys & {sp.key(p) for p in pending}
    for c in prop.candidates:
        fr = c.parameters["c"]
        assert abs(sum(fr.values()) - 1) < 1e-9
        assert 0.1 <= fr["Cu"] <= 0.6 and 0 <= fr["Au"] <= 0.3
        assert all(v >= 0 for v in fr.values())


def test_same_data_and_seed_same_candidates_and_diagnostics_are_json() -> None:
    s = spec(3)
    sp = Space(s.space)
    rng = np.random.default_rng(1)
    obs = [(p := sp.from_unit(rng.random(2)), branin(p["x1"], p["x2"])) for _ in range(10)]
    a = BotorchStrategy().propose(data(s, obs, index=4), 2)
    b = BotorchStrategy().propose(data(s, obs, index=4), 2)
    assert [c.parameters for c in a.candidates] == [c.parameters for c in b.candidates]
    diag = json.loads(json.dumps(a.diagnostics))
    for key in (
        "lengthscales",
        "noise",
        "acq_values",
        "fit_time_s",
        "opt_time_s",
        "data_hash",
        "n_train",
    ):
        assert key in diag
    assert len(diag["lengthscales"]) == 2 and diag["n_train"] == 10
    assert all(c.predicted and c.predicted["y"][1] >= 0 for c in a.candidates)


@pytest.mark.parametrize("values", [[5.0] * 6, [3.0]])
def test_ill_posed_data_gives_a_proposal_with_a_warning(values: list[float]) -> None:
    s = spec()
    sp = Space(s.space)
    rng = np.random.default_rng(2)
    obs = [(sp.from_unit(rng.random(2)), v) for v in values]
    prop = BotorchStrategy().propose(data(s, obs), 1)
    x = prop.candidates[0].parameters
    assert -5 <= x["x1"] <= 10 and 0 <= x["x2"] <= 15
    assert any("equal" in w or "only one" in w for w in prop.diagnostics["warnings"])


def test_ucb_option() -> None:
    s = spec(strategy={"method": "botorch", "options": {"acquisition": "ucb", "beta": 4.0}})
    sp = Space(s.space)
    rng = np.random.default_rng(3)
    obs = [(p := sp.from_unit(rng.random(2)), branin(p["x1"], p["x2"])) for _ in range(6)]
    prop = BotorchStrategy().propose(data(s, obs), 2)
    assert prop.diagnostics["acquisition"] == "UCB" and len(prop.candidates) == 2


@pytest.mark.parametrize("sem", [None, 0.5])
def test_batch_ucb_believes_pending_points_at_their_mean(sem: float | None) -> None:
    """A pending point keeps the model's mean but loses most of its uncertainty, so the
    next pick of the batch goes elsewhere; points far from it are left as they were."""
    import torch

    from loopctl.strategies import surrogate
    from loopctl.strategies.batch_ucb import BatchUCB

    s = spec()
    sp = Space(s.space)
    rng = np.random.default_rng(4)
    obs = [(p := sp.from_unit(rng.random(2)), branin(p["x1"], p["x2"])) for _ in range(10)]
    d = data(s, obs)
    if sem is not None:  # observed standard errors: a fixed-noise GP
        d = CampaignData(
            **{
                **d.__dict__,
                "completed": tuple(
                    Observation(o.trial_id, o.parameters, {"y": (o.outcomes["y"][0], sem)})
                    for o in d.completed
                ),
            }
        )
    model, _, _ = surrogate.fit(d, [])
    acq = BatchUCB(model, beta=4.0)
    here = torch.tensor([[[0.2, 0.9]]], dtype=torch.float64)  # encoded: unit cube
    far = torch.tensor([[[0.9, 0.1]]], dtype=torch.float64)
    with torch.no_grad():
        before = acq(here).item(), acq(far).item()
        mean = model.posterior(here).mean.item()  # type: ignore[attr-defined]
        acq.set_X_pending(here[0])
        after = acq(here).item(), acq(far).item()
    assert after[0] < before[0] - 0.5 * (before[0] - mean)  # most of the bonus is gone
    assert after[0] > mean - 1e-6
    assert after[1] == pytest.approx(before[1], rel=0.05)
    acq.set_X_pending(None)
    with torch.no_grad():
        assert acq(here).item() == pytest.approx(before[0])


def test_two_objectives_use_ehvi_and_beat_sobol(tmp_path: Path) -> None:
    from loopctl import Campaign
    from loopctl.pareto import hypervolume_2d
    from tests.specs import branin as branin_spec

    found = {}
    for method in ("auto", "sobol"):
        spec = branin_spec(
            tmp_path,
            name=f"mo-{method}.yaml",
            seed=1,
            oracle=None,
            objectives=[{"name": "a", "goal": "minimize"}, {"name": "b", "goal": "minimize"}],
            strategy={"method": method},
        )
        c = Campaign.create(spec)
        points = []
        for _ in range(16):
            (t,) = c.ask()
            x1, x2 = t.parameters["x1"], t.parameters["x2"]
            a, b = branin(x1, x2), (x1 - 2.5) ** 2 + (x2 - 7.5) ** 2
            c.tell(t.id, {"a": a, "b": b})
            points.append((a, b))
        found[method] = hypervolume_2d(points, (100.0, 100.0))
        if method == "auto":
            last = c.store.proposals()[-1]
            assert last["strategy"] == "mobo"
            assert last["diagnostics"]["acquisition"] == "qLogNEHVI"
            assert len(last["diagnostics"]["reference_point"]) == 2
    assert found["auto"] > found["sobol"], found


def test_large_campaigns_fit_and_condition_on_subsets_that_keep_the_best(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from loopctl.strategies import surrogate

    # the real limits are 400 and 2,000 points; the same code path at a tenth of the cost
    monkeypatch.setattr(surrogate, "MAX_FIT", 20)
    monkeypatch.setattr(surrogate, "MAX_CONDITION", 40)
    rng = np.random.default_rng(3)
    pts = [{"x1": float(a), "x2": float(b)} for a, b in rng.uniform([-5, 0], [10, 15], (90, 2))]
    values = [branin(p["x1"], p["x2"]) for p in pts]
    d = data(spec(), list(zip(pts, values, strict=True)))
    notes: list[str] = []
    model: Any
    model, tr, _ = surrogate.fit(d, notes)
    (x,) = model.train_inputs
    assert x.shape[0] == 40
    best = tr.x[int(tr.y[:, 0].argmax())]
    assert bool((x == best).all(dim=-1).any()), "the best observation was dropped"
    assert any("conditioned on 40" in n for n in notes)
    proposal = BotorchStrategy().propose(d, 2)
    known = {(p["x1"], p["x2"]) for p in pts}
    assert len(proposal.candidates) == 2
    assert not known & {(c.parameters["x1"], c.parameters["x2"]) for c in proposal.candidates}


def test_outcomes_share_one_batched_gp_until_each_needs_its_own_subset(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from botorch.models import ModelListGP

    from loopctl.strategies import surrogate

    monkeypatch.setattr(surrogate, "MAX_FIT", 30)
    monkeypatch.setattr(surrogate, "MAX_CONDITION", 40)
    s = spec(outcome_constraints=["g <= 5"])
    rng = np.random.default_rng(4)
    pts = [{"x1": float(a), "x2": float(b)} for a, b in rng.uniform([-5, 0], [10, 15], (60, 2))]

    def campaign(n: int) -> CampaignData:
        obs = tuple(
            Observation(f"T{i}", p, {"y": (branin(p["x1"], p["x2"]), None), "g": (p["x1"], None)})
            for i, p in enumerate(pts[:n])
        )
        return CampaignData(s, Space(s.space), obs, (), (), 0, 0)

    small, tr, _ = surrogate.fit(campaign(25), [])
    assert not isinstance(small, ModelListGP) and small.num_outputs == 2
    hp = surrogate.hyperparameters(small, tr)["models"]
    # g is linear in x1 alone: its GP has the longer x2 lengthscale, y's does not
    assert hp["g"]["lengthscales"][1] > hp["y"]["lengthscales"][1]
    notes: list[str] = []
    large, tr, _ = surrogate.fit(campaign(60), notes)
    assert isinstance(large, ModelListGP)
    sizes = [len(x) for m in large.models for x in cast(tuple[Any, ...], m.train_inputs)]
    assert sizes == [40, 40]
    assert set(surrogate.hyperparameters(large, tr)["models"]) == {"y", "g"}
    assert sum("conditioned on 40" in n for n in notes) == 2
