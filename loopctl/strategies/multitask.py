"""BoTorch's multi-task GP as loopctl fits it: shared by several fidelities
(:mod:`.multifidelity`) and by transfer from past data (:mod:`.transfer`).

An ICM kernel: a kernel over the parameters times a learned covariance between tasks
(BoTorch's positive index kernel, target task's variance fixed at 1), a mean and a
noise per task. How much one task says about another is learned from the data.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch
from botorch.fit import fit_gpytorch_mll
from botorch.models import MultiTaskGP
from botorch.models.kernels.categorical import CategoricalKernel
from botorch.models.transforms import Normalize, Standardize
from botorch.models.transforms.outcome import OutcomeTransform
from botorch.models.utils.gpytorch_modules import get_covar_module_with_dim_scaled_prior
from gpytorch.mlls import ExactMarginalLogLikelihood

from loopctl.space import Space
from loopctl.strategies import surrogate

DTYPE = torch.float64
MAX_FIT_STEPS = 100


def fit(
    space: Space,
    x: torch.Tensor,
    task: torch.Tensor,
    y: torch.Tensor,
    n_tasks: int,
    notes: list[str],
    *,
    output_tasks: Sequence[int] | None = None,
    categorical: bool = False,
    outcome_transform: OutcomeTransform | None = None,
) -> tuple[MultiTaskGP, float]:
    """The fitted model of ``y`` at (``x``, ``task``); ``task`` an n x 1 column of indices.

    ``categorical``: the space's choices get a categorical kernel (as the campaign's own
    GP gives them) instead of being read as numbers on the encoded box. ``output_tasks``:
    the tasks a posterior at parameters alone (no task column) describes.
    ``outcome_transform`` defaults to standardising ``y`` as a whole.
    """
    t0 = time.perf_counter()
    d = space.dim
    covar = _categorical_covar(space) if categorical and space.cat_dims else None
    cont = [i for i in range(d) if not (categorical and i in space.cat_dims)]
    model = MultiTaskGP(
        torch.cat([x, task], dim=1),
        y,
        task_feature=d,
        covar_module=covar,
        all_tasks=list(range(n_tasks)),
        output_tasks=list(output_tasks) if output_tasks is not None else None,
        input_transform=Normalize(
            d=d + 1, indices=cont, bounds=surrogate.tensor(space.bounds)[:, cont]
        ),
        outcome_transform=outcome_transform if outcome_transform is not None else Standardize(m=1),
    )
    try:
        # 100 L-BFGS steps, as for the mixed kernel (surrogate.fit_columns): the task
        # covariance's likelihood is flat and the default ran to ten seconds at 200 points
        fit_gpytorch_mll(
            ExactMarginalLogLikelihood(model.likelihood, model),
            optimizer_kwargs={"options": {"maxiter": MAX_FIT_STEPS}},
        )
    except Exception as exc:  # a failed fit still leaves a usable model at the prior's values
        notes.append(f"fit failed, kept the prior's hyperparameters: {exc}")
    return model, time.perf_counter() - t0


def _categorical_covar(space: Space) -> Any:
    """The dimension-scaled RBF kernel on the continuous inputs times a categorical kernel
    on the choices (Hamming distance, a lengthscale each): the product BoTorch's mixed GP
    uses, without its sum term."""
    cats = list(space.cat_dims)
    cont = [i for i in range(space.dim) if i not in cats]
    kernel: Any = CategoricalKernel(ard_num_dims=len(cats), active_dims=cats)
    if cont:
        rbf = get_covar_module_with_dim_scaled_prior(ard_num_dims=len(cont), active_dims=cont)
        kernel = rbf * kernel
    return kernel


def task_covariance(model: MultiTaskGP) -> list[list[float]] | None:
    """The learned covariance between tasks (in standardised units), as plain floats."""
    for module in model.modules():
        if hasattr(module, "covar_matrix") and hasattr(module, "num_tasks"):
            with torch.no_grad():
                m: Any = getattr(module, "covar_matrix")  # noqa: B009 - a property, not a method
                dense = m.to_dense() if hasattr(m, "to_dense") else m
            return [[round(float(v), 6) for v in row] for row in dense.tolist()]
    return None


def correlations(cov: list[list[float]] | None, target: int = 0) -> list[float] | None:
    """Each task's correlation with the target task, from :func:`task_covariance`."""
    if cov is None:
        return None
    t = cov[target][target]
    return [round(cov[target][j] / max((t * cov[j][j]) ** 0.5, 1e-12), 4) for j in range(len(cov))]
