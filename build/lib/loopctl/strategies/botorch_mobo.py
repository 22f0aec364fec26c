"""Several objectives: log-noisy expected hypervolume improvement, ParEGO beyond four.

Every objective is turned into "larger is better" by its sign. The reference
point comes from the objectives' thresholds where the campaign gives them, and
otherwise from the observed Pareto front (its nadir, a tenth of its range
beyond). Hypervolume computations grow exponentially with the number of
objectives, so above four each pick instead maximises log-noisy EI of a
Chebyshev scalarisation with its own seeded random weights (ParEGO), which
spreads a batch over the front.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Callable
from functools import partial
from typing import Any

import botorch
import numpy as np
import torch
from botorch.acquisition import AcquisitionFunction
from botorch.acquisition.logei import qLogNoisyExpectedImprovement
from botorch.acquisition.multi_objective.logei import qLogNoisyExpectedHypervolumeImprovement
from botorch.acquisition.multi_objective.objective import IdentityMCMultiOutputObjective
from botorch.acquisition.objective import GenericMCObjective
from botorch.models.model import Model
from botorch.sampling import SobolQMCNormalSampler
from botorch.utils.multi_objective.hypervolume import infer_reference_point
from botorch.utils.multi_objective.pareto import is_non_dominated
from botorch.utils.multi_objective.scalarization import get_chebyshev_scalarization

from loopctl.strategies import MAX_EHVI_OBJECTIVES, surrogate
from loopctl.strategies.base import CampaignData, Candidate, Proposal
from loopctl.strategies.botorch_gp import MC_SAMPLES, warning_texts
from loopctl.strategies.feasibility import failure_aware
from loopctl.strategies.search import Pick, Search

EFFORT = 0.6  # restarts and raw samples relative to single-objective EI


class MultiObjectiveStrategy:
    name = "mobo"

    def propose(self, data: CampaignData, n: int) -> Proposal:
        if not data.completed:
            raise ValueError("multi-objective BO needs completed trials")
        t0 = time.perf_counter()
        notes: list[str] = []
        diagnostics: dict[str, Any] = {}
        m = len(data.spec.objectives)
        with torch.random.fork_rng(), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.manual_seed(data.seed)
            model, tr, fit_s = surrogate.fit(data, notes)
            t1 = time.perf_counter()
            if m <= MAX_EHVI_OBJECTIVES:
                ref = reference_point(data, tr)
                diagnostics["reference_point"] = in_units(data, tr, ref)
                acq = failure_aware(data, _ehvi(data, model, tr, ref), True, diagnostics)
                search = Search(data, acq, notes, effort=EFFORT)
                picks = search.run(n)
                name = "qLogNEHVI"
            else:
                picks, search, weights = _parego(data, model, tr, n, notes, diagnostics)
                diagnostics["parego_weights"] = weights
                name = "ParEGO (qLogNEI of a Chebyshev scalarisation)"
            opt_s = time.perf_counter() - t1
            preds = surrogate.predict(data, model, tr, [p.values for p in picks])
        notes += warning_texts(caught)
        candidates = [
            Candidate(dict(p.values), pred, p.acq) for p, pred in zip(picks, preds, strict=True)
        ]
        diagnostics |= surrogate.hyperparameters(model, tr) | {
            "acquisition": name,
            "acq_values": [p.acq for p in picks],
            "n_train": len(data.completed),
            "n_failed": len(data.failed),
            "n_pending": len(data.pending),
            "search": search.method,
            "fit_time_s": fit_s,
            "opt_time_s": opt_s,
            "time_total_s": time.perf_counter() - t0,
            "data_hash": surrogate.data_hash(data),
            "warnings": notes,
        }
        return Proposal(
            strategy=self.name,
            version=f"botorch-{botorch.__version__}",
            seed=data.seed,
            candidates=candidates,
            diagnostics=diagnostics,
        )


def _sampler(seed: int) -> SobolQMCNormalSampler:
    return SobolQMCNormalSampler(sample_shape=torch.Size([MC_SAMPLES]), seed=seed)


def _ehvi(
    data: CampaignData, model: Model, tr: surrogate.Training, ref: torch.Tensor
) -> AcquisitionFunction:
    m = tr.n_objectives
    return qLogNoisyExpectedHypervolumeImprovement(
        model=model,
        ref_point=ref.tolist(),
        X_baseline=surrogate.baseline(tr),
        sampler=_sampler(data.seed),
        objective=IdentityMCMultiOutputObjective(outcomes=list(range(m))),
        constraints=surrogate.outcome_constraints(data, tr) or None,
        prune_baseline=True,
    )


def _parego(
    data: CampaignData,
    model: Model,
    tr: surrogate.Training,
    n: int,
    notes: list[str],
    diagnostics: dict[str, Any],
) -> tuple[list[Pick], Search, list[list[float]]]:
    """One pick per random weight vector; earlier picks are pending for later ones."""
    m = tr.n_objectives
    rng = np.random.default_rng(data.seed)
    picks: list[Pick] = []
    weights: list[list[float]] = []
    search: Search | None = None
    for _ in range(n):
        w = rng.dirichlet(np.ones(m))
        weights.append([float(v) for v in w])
        scalarise = get_chebyshev_scalarization(surrogate.tensor(w), tr.y[:, :m])
        objective = GenericMCObjective(partial(_scalarised, f=scalarise, m=m))
        acq: AcquisitionFunction = qLogNoisyExpectedImprovement(
            model,
            X_baseline=surrogate.baseline(tr),
            sampler=_sampler(data.seed),
            objective=objective,
            constraints=surrogate.outcome_constraints(data, tr) or None,
            prune_baseline=True,
        )
        acq = failure_aware(data, acq, True, diagnostics)
        sofar = dataclasses.replace(data, pending=data.pending + tuple(p.values for p in picks))
        search = Search(sofar, acq, notes, effort=EFFORT)
        got = search.run(1)
        if not got:
            break
        picks += got
    assert search is not None
    return picks, search, weights


def _scalarised(
    z: torch.Tensor, X: torch.Tensor | None = None, *, f: Callable[..., torch.Tensor], m: int
) -> torch.Tensor:
    return f(z[..., :m], X)


def reference_point(data: CampaignData, tr: surrogate.Training) -> torch.Tensor:
    """In model coordinates: thresholds where given (maximised and warped like the data),
    else inferred from the observed Pareto front: its nadir less a tenth of its range
    (BoTorch's heuristic).

    A reference point below the worst observation instead (the first version) spends
    the hypervolume on regions far from the front: on DTLZ2 it did no better than Sobol.
    """
    y = tr.y[:, : len(data.spec.objectives)]
    inferred = infer_reference_point(y[is_non_dominated(y)])
    ref: list[Any] = []
    for i, o in enumerate(data.spec.objectives):
        if o.threshold is None:
            ref.append(float(inferred[i]))
        else:
            ref.append(float(tr.warp(i).forward(torch.tensor(o.sign * o.threshold, dtype=y.dtype))))
    return torch.tensor(ref, dtype=surrogate.DTYPE)


def in_units(data: CampaignData, tr: surrogate.Training, ref: torch.Tensor) -> list[float]:
    """A reference point in the objectives' own units and directions, for the record."""
    return [o.sign * float(tr.warp(i).inverse(ref[i])) for i, o in enumerate(data.spec.objectives)]
