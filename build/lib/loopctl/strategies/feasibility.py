"""Learning from failures: the probability that a trial at x succeeds.

A trial that failed for good (the film did not form, the calculation did not
converge) says nothing about the objective but a lot about where not to go.
A GP is fitted to every finished trial's label (+1 completed, -1 failed)
with its own lengthscales, so it learns which directions separate success
from failure; its prediction is squashed through a probit,
P = Phi(3 mu / sqrt(1 + 9 var)) (least-squares GP classification). Where
labels are clear P approaches 0 or 1; where evidence is thin the variance
keeps P near one half, so the campaign still proposes there now and then.

P multiplies into the acquisition (adds in log space), so log-noisy EI
becomes a feasibility-weighted EI. No tool in this field does this inside an
asynchronous loop; ignoring failures makes a GP return to a failing region,
because without observations there its uncertainty, and so its EI, stays high.
"""

from __future__ import annotations

from typing import Any

import torch
from botorch.acquisition import AcquisitionFunction
from botorch.fit import fit_gpytorch_mll
from botorch.models import SingleTaskGP
from botorch.models.transforms import Normalize
from gpytorch.means import LinearMean
from gpytorch.mlls import ExactMarginalLogLikelihood

from loopctl.space import Space
from loopctl.strategies.base import CampaignData
from loopctl.strategies.surrogate import DTYPE, tensor

MAXITER = 60
SHARPNESS = 3.0  # certain failure -> P ~ 1e-3 (log -6.6); certain success -> P ~ 1


class SuccessModel:
    def __init__(self, space: Space, succeeded: torch.Tensor, failed: torch.Tensor) -> None:
        x = torch.cat([succeeded, failed])
        labels = torch.cat(
            [torch.ones(len(succeeded), dtype=DTYPE), -torch.ones(len(failed), dtype=DTYPE)]
        ).unsqueeze(-1)
        self.model = SingleTaskGP(
            x,
            labels,
            input_transform=Normalize(d=space.dim, bounds=tensor(space.bounds)),
            outcome_transform=None,  # labels stay +-1 so the probit scale means something
            mean_module=LinearMean(input_size=space.dim),
        )
        try:
            # a cap on the cost, not a change of answer: on the failure benchmark's
            # data the fit converged in fewer steps (0.2-0.7 s); P(success) needs the
            # lengthscales of the directions that separate the labels, not the rest
            fit_gpytorch_mll(
                ExactMarginalLogLikelihood(self.model.likelihood, self.model),
                optimizer_kwargs={"options": {"maxiter": MAXITER}},
            )
        except Exception:  # the prior's lengthscales still give a usable, smoother estimate
            pass
        self.model.eval()

    def log_probability(self, x: torch.Tensor) -> torch.Tensor:
        """log P(success) at encoded points x (batch x q x d -> batch x q), differentiable."""
        post = self.model.posterior(x)
        mean, var = post.mean.squeeze(-1), post.variance.squeeze(-1).clamp_min(0.0)
        z = SHARPNESS * mean / torch.sqrt(1.0 + SHARPNESS**2 * var)
        return torch.special.log_ndtr(z)

    def lengthscales(self) -> list[float]:
        return [float(v) for v in self.model.covar_module.lengthscale.detach().reshape(-1)]


class FailureAware(AcquisitionFunction):
    """A log-acquisition plus log P(success) of every point of the q-batch."""

    def __init__(self, inner: AcquisitionFunction, success: SuccessModel) -> None:
        super().__init__(model=inner.model)
        self.inner = inner
        self.success = success

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return self.inner(X) + self.success.log_probability(X).sum(-1)

    def set_X_pending(self, X_pending: torch.Tensor | None = None) -> None:
        self.inner.set_X_pending(X_pending)


def failure_aware(
    data: CampaignData, acq: AcquisitionFunction, log_scale: bool, diagnostics: dict[str, Any]
) -> AcquisitionFunction:
    """Weight ``acq`` by P(success) when the campaign has failures and the option is on."""
    if not data.failed or not data.spec.strategy.options.get("learn_failures", True):
        return acq
    if not log_scale:
        diagnostics["failure_model"] = "not applied: the acquisition is not on a log scale"
        return acq
    space = data.space
    ok = tensor(space.encode_many([o.parameters for o in data.completed]))
    bad = tensor(space.encode_many(list(data.failed)))
    model = SuccessModel(space, ok, bad)
    diagnostics["failure_model"] = {
        "kind": "GP on +-1 labels, probit",
        "failed": len(data.failed),
        "succeeded": len(data.completed),
        "lengthscales": model.lengthscales(),
    }
    return FailureAware(acq, model)
