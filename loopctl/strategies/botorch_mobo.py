"""Two to four objectives: independent GPs and log-noisy expected hypervolume improvement.

Every objective is turned into "larger is better" by its sign. The reference
point comes from the objectives' thresholds where the campaign gives them, and
otherwise from the data (the worst observed value, a tenth of the range beyond).
"""

from __future__ import annotations

import time
import warnings
from typing import Any

import botorch
import torch
from botorch.acquisition.multi_objective.logei import qLogNoisyExpectedHypervolumeImprovement
from botorch.fit import fit_gpytorch_mll
from botorch.models import ModelListGP, SingleTaskGP
from botorch.models.transforms import Normalize, Standardize
from botorch.optim import optimize_acqf
from gpytorch.mlls import SumMarginalLogLikelihood

from loopctl.strategies.base import CampaignData, Candidate, Proposal
from loopctl.strategies.botorch_gp import DTYPE, data_hash

MAX_OBJECTIVES = 4


class MultiObjectiveStrategy:
    name = "mobo"

    def model_free(self, completed: int, pending: int) -> bool:
        return False

    def propose(self, data: CampaignData, n: int) -> Proposal:
        if not data.completed:
            raise ValueError("multi-objective BO needs completed trials")
        t0 = time.perf_counter()
        space, objs = data.space, data.spec.objectives
        x = torch.tensor(space.encode_many([o.parameters for o in data.completed]), dtype=DTYPE)
        y = torch.tensor(
            [[o.sign * ob.outcomes[o.name][0] for o in objs] for ob in data.completed], dtype=DTYPE
        )
        bounds = torch.tensor(space.bounds, dtype=DTYPE)
        notes: list[str] = []
        with torch.random.fork_rng(), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.manual_seed(data.seed)
            models = [
                SingleTaskGP(
                    x,
                    y[:, i : i + 1],
                    input_transform=Normalize(d=x.shape[-1], bounds=bounds),
                    outcome_transform=Standardize(m=1),
                )
                for i in range(len(objs))
            ]
            model = ModelListGP(*models)
            try:
                fit_gpytorch_mll(SumMarginalLogLikelihood(model.likelihood, model))
            except Exception as exc:  # keep prior hyperparameters rather than stop
                notes.append(f"model fit failed, using prior hyperparameters: {exc}")
            fit_s = time.perf_counter() - t0
            ref = reference_point(data, y)
            pending = (
                torch.tensor(space.encode_many(list(data.pending + data.rejected)), dtype=DTYPE)
                if data.pending or data.rejected
                else None
            )
            acq = qLogNoisyExpectedHypervolumeImprovement(
                model=model,
                ref_point=ref.tolist(),
                X_baseline=x,
                X_pending=pending,
                prune_baseline=True,
            )
            eq = [
                (torch.tensor(c.indices), torch.tensor(c.coefficients, dtype=DTYPE), c.rhs)
                for c in space.equalities
            ]
            d = space.dim
            cands, values = optimize_acqf(
                acq,
                bounds=bounds,
                q=n,
                num_restarts=min(6, 2 + d),
                raw_samples=min(256, 32 * d),
                sequential=True,
                equality_constraints=eq or None,
                options={"batch_limit": 5, "maxiter": 150},
            )
        notes += sorted({f"{w.category.__name__}: {w.message}" for w in caught})
        chosen = [space.decode(row) for row in cands.detach().numpy()]
        with torch.no_grad():
            post = model.posterior(torch.tensor(space.encode_many(chosen), dtype=DTYPE))
            mean, sd = post.mean, post.variance.clamp_min(0).sqrt()
        acq_values = values.reshape(-1).tolist() if values is not None else [None] * n
        candidates = [
            Candidate(
                p,
                {o.name: (o.sign * float(mean[i, j]), float(sd[i, j])) for j, o in enumerate(objs)},
                a,
            )
            for i, (p, a) in enumerate(zip(chosen, acq_values, strict=True))
        ]
        return Proposal(
            strategy=self.name,
            version=f"botorch-{botorch.__version__}",
            seed=data.seed,
            candidates=candidates,
            diagnostics={
                "acquisition": "qLogNEHVI",
                "reference_point": ref.tolist(),
                "lengthscales": [
                    m.covar_module.lengthscale.detach().reshape(-1).tolist() for m in models
                ],
                "n_train": len(data.completed),
                "n_pending": len(data.pending),
                "fit_time_s": fit_s,
                "time_total_s": time.perf_counter() - t0,
                "data_hash": data_hash(data),
                "warnings": notes,
            },
        )


def reference_point(data: CampaignData, y: torch.Tensor) -> torch.Tensor:
    """Thresholds where given (in the maximised orientation), else just below the worst."""
    lo, hi = y.min(dim=0).values, y.max(dim=0).values
    inferred = lo - 0.1 * (hi - lo).clamp_min(1e-9)
    ref: list[Any] = []
    for i, o in enumerate(data.spec.objectives):
        ref.append(o.sign * o.threshold if o.threshold is not None else float(inferred[i]))
    return torch.tensor(ref, dtype=DTYPE)
