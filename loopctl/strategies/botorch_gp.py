"""Single-objective Bayesian optimisation: a GP surrogate and log-noisy expected improvement.

The model sees the encoded box from :class:`~loopctl.space.Space` and nothing
else; compositions arrive as an equality constraint (fractions sum to one)
that the acquisition optimiser honours, and decoding repairs the last 1e-9.
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from typing import Any

import botorch
import numpy as np
import torch
from botorch.acquisition import AcquisitionFunction, qUpperConfidenceBound
from botorch.acquisition.logei import qLogNoisyExpectedImprovement
from botorch.fit import fit_gpytorch_mll
from botorch.models import SingleTaskGP
from botorch.models.transforms import Normalize, Standardize
from botorch.optim import optimize_acqf
from gpytorch.mlls import ExactMarginalLogLikelihood

from loopctl.strategies.base import CampaignData, Candidate, Proposal

torch.set_num_threads(2)
DTYPE = torch.float64


class BotorchStrategy:
    name = "botorch"

    def model_free(self, completed: int, pending: int) -> bool:
        return False

    def propose(self, data: CampaignData, n: int) -> Proposal:
        if not data.completed:
            raise ValueError("a GP needs at least one completed trial")
        t0 = time.perf_counter()
        notes: list[str] = []
        with torch.random.fork_rng(), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.manual_seed(data.seed)
            model, x, fit_s = fit_model(data, notes)
            t1 = time.perf_counter()
            candidates, acq_values, restarts, raw = _optimise(data, model, x, n)
            opt_s = time.perf_counter() - t1
        notes += sorted({f"{w.category.__name__}: {w.message}" for w in caught})
        chosen = _decode_unique(data, candidates, notes)
        preds = _predict(data, model, chosen)
        obj = data.spec.objectives[0]
        cands = [
            Candidate(p, {obj.name: pred}, float(a))
            for p, pred, a in zip(chosen, preds, acq_values, strict=True)
        ]
        diagnostics = _hyperparameters(model) | {
            "acquisition": _acq_name(data),
            "acq_values": [float(a) for a in acq_values],
            "n_train": len(data.completed),
            "n_pending": len(data.pending),
            "num_restarts": restarts,
            "raw_samples": raw,
            "fit_time_s": fit_s,
            "opt_time_s": opt_s,
            "time_total_s": time.perf_counter() - t0,
            "data_hash": data_hash(data),
            "warnings": notes,
        }
        return Proposal(
            strategy=self.name,
            version=f"botorch-{botorch.__version__}",
            seed=data.seed,
            candidates=cands,
            diagnostics=diagnostics,
        )


def _acq_name(data: CampaignData) -> str:
    return "ucb" if data.spec.strategy.options.get("acquisition") == "ucb" else "qLogNEI"


def fit_model(data: CampaignData, notes: list[str]) -> tuple[SingleTaskGP, torch.Tensor, float]:
    """The campaign's GP on its completed trials (also used by reports); appends warnings."""
    obj = data.spec.objectives[0]
    x = torch.tensor(data.space.encode_many([o.parameters for o in data.completed]), dtype=DTYPE)
    y = torch.tensor([[obj.sign * o.outcomes[obj.name][0]] for o in data.completed], dtype=DTYPE)
    sems = [o.outcomes[obj.name][1] for o in data.completed]
    yvar = None
    if all(s is not None for s in sems):
        yvar = torch.tensor([[max(float(s) ** 2, 1e-12)] for s in sems], dtype=DTYPE)  # type: ignore[arg-type]
    if float(y.std()) == 0.0 if len(y) > 1 else True:
        notes.append(
            "all observed values are equal (or there is only one): the model is flat "
            "and the proposal is driven by uncertainty alone"
        )
    bounds = torch.tensor(data.space.bounds, dtype=DTYPE)
    model = SingleTaskGP(
        x,
        y,
        train_Yvar=yvar,
        input_transform=Normalize(d=x.shape[-1], bounds=bounds),
        outcome_transform=Standardize(m=1),
    )
    t = time.perf_counter()
    try:
        fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
    except Exception as exc:  # a failed fit still leaves a usable model with prior values
        notes.append(f"model fit failed, using prior hyperparameters: {exc}")
    return model, x, time.perf_counter() - t


def _optimise(
    data: CampaignData, model: SingleTaskGP, x: torch.Tensor, n: int
) -> tuple[torch.Tensor, list[float], int, int]:
    space = data.space
    avoid = data.pending + data.rejected
    pending = (
        # rejected candidates count as pending: the acquisition sees no gain in going there
        torch.tensor(space.encode_many(list(avoid)), dtype=DTYPE) if avoid else None
    )
    if _acq_name(data) == "ucb":
        beta = float(data.spec.strategy.options.get("beta", 2.0))
        acq: Any = qUpperConfidenceBound(model, beta=beta, X_pending=pending)
    else:
        acq = qLogNoisyExpectedImprovement(
            model, X_baseline=x, X_pending=pending, prune_baseline=True
        )
    d = space.dim
    restarts = min(10, 2 + d)
    raw = min(512, 64 * d)
    bounds = torch.tensor(space.bounds, dtype=DTYPE)
    if space.equalities and all(_free_simplex(space, c.indices) for c in space.equalities):
        return _optimise_on_simplex(space, acq, pending, bounds, n, restarts, raw)
    eq = [
        (torch.tensor(c.indices), torch.tensor(c.coefficients, dtype=DTYPE), c.rhs)
        for c in space.equalities
    ]
    cands, values = optimize_acqf(
        acq,
        bounds=bounds,
        q=n,
        num_restarts=restarts,
        raw_samples=raw,
        sequential=True,
        equality_constraints=eq or None,
        options={"batch_limit": 5, "maxiter": 200},
    )
    assert values is not None  # return_acq_values defaults to True
    return cands.detach(), values.reshape(-1).tolist(), restarts, raw


def _free_simplex(space: Any, indices: tuple[int, ...]) -> bool:
    """A composition without binding per-element bounds: every fraction may be 0 to 1."""
    return all(space.bounds[0, i] == 0.0 and space.bounds[1, i] == 1.0 for i in indices)


class _OnSimplex(AcquisitionFunction):
    """The acquisition seen through x = z / sum(z) on each composition block.

    Turns the simplex's equality constraint into plain box bounds, so L-BFGS-B
    replaces SLSQP: measured 5-10x faster on a 5-element simplex, same optimum.
    """

    def __init__(self, inner: AcquisitionFunction, blocks: list[list[int]]) -> None:
        super().__init__(model=inner.model)
        self.inner = inner
        self.blocks = blocks

    def to_x(self, z: torch.Tensor) -> torch.Tensor:
        x = z.clone()
        for idx in self.blocks:
            part = z[..., idx]
            x[..., idx] = part / part.sum(dim=-1, keepdim=True).clamp_min(1e-12)
        return x

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.inner(self.to_x(z))


def _optimise_on_simplex(
    space: Any,
    acq: Any,
    pending: torch.Tensor | None,
    bounds: torch.Tensor,
    n: int,
    restarts: int,
    raw: int,
) -> tuple[torch.Tensor, list[float], int, int]:
    blocks = [list(c.indices) for c in space.equalities]
    wrapped = _OnSimplex(acq, blocks)
    zb = bounds.clone()
    for idx in blocks:
        zb[0, idx] = 1e-6
    chosen: list[torch.Tensor] = []
    values: list[float] = []
    for _ in range(n):  # sequential greedy: each pick becomes a pending point
        z, v = optimize_acqf(
            wrapped,
            bounds=zb,
            q=1,
            num_restarts=restarts,
            raw_samples=raw,
            options={"batch_limit": 5, "maxiter": 200},
        )
        assert v is not None
        chosen.append(wrapped.to_x(z).detach())
        values.append(float(v))
        stack = torch.cat(chosen, dim=-2)
        acq.set_X_pending(stack if pending is None else torch.cat([pending, stack], dim=-2))
    return torch.cat(chosen, dim=-2), values, restarts, raw


def _decode_unique(
    data: CampaignData, cands: torch.Tensor, notes: list[str]
) -> list[dict[str, Any]]:
    """Rounding (integers, choices) can map two candidates onto one; never send a repeat."""
    space = data.space
    seen = {space.key(p) for p in data.pending + data.rejected}
    seen |= {space.key(o.parameters) for o in data.completed}
    out = []
    rng = np.random.default_rng(data.seed)
    for row in cands.numpy():
        p = space.decode(row)
        tries = 0
        while space.key(p) in seen and tries < 100:
            p = space.from_unit(rng.random(space.sobol_dim()))
            tries += 1
        if tries:
            notes.append("a candidate repeated a known point after rounding; replaced at random")
        seen.add(space.key(p))
        out.append(p)
    return out


def _predict(
    data: CampaignData, model: SingleTaskGP, chosen: list[dict[str, Any]]
) -> list[tuple[float, float]]:
    sign = data.spec.objectives[0].sign
    x = torch.tensor(data.space.encode_many(chosen), dtype=DTYPE)
    with torch.no_grad():
        post = model.posterior(x)
        mean = post.mean.reshape(-1).tolist()
        sd = post.variance.clamp_min(0).sqrt().reshape(-1).tolist()
    return [(sign * m, s) for m, s in zip(mean, sd, strict=True)]


def _hyperparameters(model: SingleTaskGP) -> dict[str, Any]:
    out: dict[str, Any] = {}
    kernel: Any = model.covar_module
    base = getattr(kernel, "base_kernel", kernel)
    if getattr(base, "lengthscale", None) is not None:
        out["lengthscales"] = base.lengthscale.detach().reshape(-1).tolist()
    if hasattr(kernel, "outputscale"):
        out["outputscale"] = float(kernel.outputscale.detach())
    noise = getattr(model.likelihood, "noise", None)
    if noise is not None:
        out["noise"] = noise.detach().reshape(-1).tolist()
    out["mean_constant"] = float(model.mean_module.constant.detach())
    return out


def data_hash(data: CampaignData) -> str:
    """What the model saw, so an auditor can tell whether two proposals had the same data."""
    rows = sorted((o.trial_id, sorted(o.outcomes.items())) for o in data.completed)
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()
