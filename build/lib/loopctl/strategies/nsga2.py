"""NSGA-II over the surrogate: pymoo evolves a population against the GPs'
predictions (never against the experiment), and the batch is taken from the
predicted front by hypervolume contribution.

It needs no acquisition optimisation, so its cost grows gently with the
number of objectives, where hypervolume-based acquisitions grow exponentially.
Each objective is predicted by its posterior mean, or by an optimistic bound
mean + beta * sd (the default, so unexplored regions get a chance).
Contributions are estimated by Monte Carlo over the box between the
reference point and the best predictions, which works for any number of
objectives.
"""

from __future__ import annotations

import time
import warnings
from typing import Any

import botorch
import numpy as np
import torch
from botorch.models.model import Model

from loopctl.strategies import surrogate
from loopctl.strategies.base import CampaignData, Candidate, Proposal
from loopctl.strategies.botorch_gp import warning_texts
from loopctl.strategies.botorch_mobo import in_units, reference_point
from loopctl.strategies.search import project

POPULATION = 64
GENERATIONS = 60
MC_POINTS = 4096


class Nsga2Strategy:
    name = "nsga2"

    def propose(self, data: CampaignData, n: int) -> Proposal:
        m = len(data.spec.objectives)
        if m < 2:
            raise ValueError("nsga2 needs two or more objectives")
        if not data.completed:
            raise ValueError("nsga2 needs completed trials to fit its models")
        t0 = time.perf_counter()
        notes: list[str] = []
        options = data.spec.strategy.options
        optimistic = options.get("nsga2_bound", "ucb") == "ucb"
        beta = float(options.get("beta", 1.0)) if optimistic else 0.0
        with torch.random.fork_rng(), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.manual_seed(data.seed)
            model, tr, fit_s = surrogate.fit(data, notes)
            t1 = time.perf_counter()
            score = _Scorer(data, model, tr, beta)
            if data.space.pool:
                x = data.space.pool_x
                generations = 0
            else:
                x = _evolve(data, score, tr)
                generations = GENERATIONS
            picks = _select(data, score, tr, x, n, notes)
            opt_s = time.perf_counter() - t1
            preds = surrogate.predict(data, model, tr, [p for p, _ in picks])
        notes += warning_texts(caught)
        ref = reference_point(data, tr)
        return Proposal(
            strategy=self.name,
            version=f"botorch-{botorch.__version__}",
            seed=data.seed,
            candidates=[
                Candidate(dict(p), pred, c) for (p, c), pred in zip(picks, preds, strict=True)
            ],
            diagnostics=surrogate.hyperparameters(model, tr)
            | {
                "acquisition": "NSGA-II on "
                + (f"mean + {beta:g} sd" if optimistic else "posterior mean")
                + ", batch by hypervolume contribution",
                "reference_point": in_units(data, tr, ref),
                "population": POPULATION,
                "generations": generations,
                "hv_contributions": [c for _, c in picks],
                "n_train": len(data.completed),
                "n_pending": len(data.pending),
                "fit_time_s": fit_s,
                "opt_time_s": opt_s,
                "time_total_s": time.perf_counter() - t0,
                "data_hash": surrogate.data_hash(data),
                "warnings": notes,
            },
        )


class _Scorer:
    """Predicted objectives (larger is better) and constraint values at encoded points."""

    def __init__(self, data: CampaignData, model: Model, tr: surrogate.Training, beta: float):
        self.data, self.model, self.tr, self.beta = data, model, tr, beta
        self.m = tr.n_objectives
        self.constraints = surrogate.outcome_constraints(data, tr)

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with torch.no_grad():
            post: Any = self.model.posterior(surrogate.tensor(x))
            mean, sd = post.mean, post.variance.clamp_min(0.0).sqrt()
        f = (mean[:, : self.m] + self.beta * sd[:, : self.m]).numpy()
        g = (
            np.stack([c(mean).numpy() for c in self.constraints], axis=-1)
            if self.constraints
            else np.zeros((len(x), 0))
        )
        return f, g


def _to_x(data: CampaignData, z: np.ndarray) -> np.ndarray:
    """Genes -> feasible encoded points: compositions projected, categories rounded."""
    space = data.space
    x = torch.as_tensor(z, dtype=surrogate.DTYPE).clone()
    bounds = surrogate.tensor(space.bounds)
    for c in space.equalities:
        idx = list(c.indices)
        x[:, idx] = project(x[:, idx], bounds[0, idx], bounds[1, idx], c.rhs)
    for d in space.cat_dims:
        x[:, d] = x[:, d].round()
    return x.numpy()


def _evolve(data: CampaignData, score: _Scorer, tr: surrogate.Training) -> np.ndarray:
    from pymoo.algorithms.moo.nsga2 import NSGA2
    from pymoo.core.problem import Problem
    from pymoo.optimize import minimize

    space = data.space
    ineq = space.inequalities

    class _Surrogate(Problem):
        def __init__(self) -> None:
            super().__init__(
                n_var=space.dim,
                n_obj=score.m,
                n_ieq_constr=len(score.constraints) + len(ineq),
                xl=space.bounds[0],
                xu=space.bounds[1],
            )

        def _evaluate(self, z: np.ndarray, out: dict[str, Any], *args: Any, **kw: Any) -> None:
            x = _to_x(data, z)
            f, g = score(x)
            lin = [c.rhs - x[:, list(c.indices)] @ np.array(c.coefficients) for c in ineq]
            out["F"] = -f  # pymoo minimises
            if self.n_ieq_constr:
                out["G"] = np.column_stack([g, *lin]) if lin else g

    rng = np.random.default_rng(data.seed)
    start = np.vstack(
        [
            tr.x.numpy()[: POPULATION // 2],
            rng.uniform(space.bounds[0], space.bounds[1], (POPULATION, space.dim)),
        ]
    )[:POPULATION]
    res = minimize(
        _Surrogate(),
        NSGA2(pop_size=POPULATION, sampling=start),
        ("n_gen", GENERATIONS),
        seed=data.seed % (2**31),
        verbose=False,
    )
    return _to_x(data, np.asarray(res.pop.get("X")))


def _select(
    data: CampaignData,
    score: _Scorer,
    tr: surrogate.Training,
    x: np.ndarray,
    n: int,
    notes: list[str],
) -> list[tuple[dict[str, Any], float]]:
    """Greedy hypervolume contribution over what is already measured or in flight."""
    space = data.space
    seen = {space.key(o.parameters) for o in data.completed}
    seen |= {space.key(p) for p in data.pending + data.rejected + data.failed}
    options: list[dict[str, Any]] = []
    for row in x:
        values = space.decode(row)
        k = space.key(values)
        if k not in seen and not space.violated(values):
            seen.add(k)
            options.append(values)
    if not options:
        notes.append("no new candidate in the predicted front")
        return []
    f, g = score(space.encode_many(options))
    feasible: np.ndarray = np.asarray((g <= 0).all(axis=1))
    covered = tr.y[:, : score.m].numpy()
    in_flight = list(data.pending + data.rejected)
    if in_flight:
        covered = np.vstack([covered, score(space.encode_many(in_flight))[0]])
    ref = reference_point(data, tr).numpy()
    top = np.maximum(f.max(axis=0), covered.max(axis=0))
    samples = np.random.default_rng(data.seed).uniform(
        ref, np.maximum(top, ref + 1e-9), (MC_POINTS, score.m)
    )
    volume = float(np.prod(np.maximum(top - ref, 1e-12)))
    free = ~_dominated(samples, covered)
    picks: list[tuple[dict[str, Any], float]] = []
    left = list(range(len(options)))
    while left and len(picks) < n:
        gains = [
            (_dominated(samples[free], f[i : i + 1]).sum() if feasible[i] else -1) for i in left
        ]
        best = int(np.argmax(gains))
        i = left.pop(best)
        picks.append((options[i], volume * max(gains[best], 0) / MC_POINTS))
        free &= ~_dominated(samples, f[i : i + 1])
    return picks


def _dominated(samples: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Which samples some point dominates (is at least as good in every objective)."""
    if len(points) == 0:
        return np.zeros(len(samples), dtype=bool)
    return np.asarray((points[None, :, :] >= samples[:, None, :]).all(axis=-1).any(axis=-1))
