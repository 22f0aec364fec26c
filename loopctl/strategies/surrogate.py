"""The campaign's GP surrogates: an independent GP per outcome, on the space's encoded box.

Shared by every model-based strategy so they agree on what the model saw:
objectives are turned into "larger is better" by their sign, constrained
outcomes are modelled in their own units, choices get a categorical kernel
(BoTorch's mixed GP) instead of being rounded from a continuous relaxation,
and observed standard errors become fixed noise.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import torch
from botorch.fit import fit_gpytorch_mll
from botorch.models import MixedSingleTaskGP, ModelListGP, SingleTaskGP
from botorch.models.model import Model
from botorch.models.transforms import Normalize, Standardize
from botorch.utils.multi_objective.pareto import is_non_dominated
from gpytorch.kernels import MaternKernel, ScaleKernel
from gpytorch.means import ZeroMean
from gpytorch.mlls import ExactMarginalLogLikelihood

from loopctl.space import Space
from loopctl.strategies import fused_kernel
from loopctl.strategies.base import CampaignData
from loopctl.strategies.forest import ForestModel
from loopctl.strategies.warping import Warp, tukey_floor

fused_kernel.no_jit()  # every model-based strategy imports this module

DTYPE = torch.float64
# Hyperparameters are fitted on at most MAX_FIT points and the model conditioned
# on at most MAX_CONDITION, each a seeded subset that keeps the best quarter. An
# exact fit costs O(n^3) per optimiser step, conditioning O(n^3) once, and every
# acquisition evaluation O(n^2) per incumbent: at 5,000 points the search alone
# took 14 s a proposal and the process 1.5 GB.
MAX_FIT = 400
MAX_CONDITION = 2000
MAX_BASELINE = 256
# Below this many observations one torch thread is faster than two: a proposal on
# 50-200 points took 0.55-0.70 s with one and 0.81-0.93 s with two (Hartmann6, 2
# cores), the second thread costing more in hand-offs than its share of small
# matrices; from 500 on two win (2.05 s against 2.40 s at 1,000).
MULTI_THREAD_FROM = 500
PRIOR_MEAN = "fitted"  # the ``prior_mean`` option's default


def set_threads(n: int) -> None:
    """Torch's threads for a model on ``n`` points; LOOPCTL_TORCH_THREADS overrides."""
    fixed = os.environ.get("LOOPCTL_TORCH_THREADS")
    many = min(2, os.cpu_count() or 1)
    torch.set_num_threads(int(fixed) if fixed else 1 if n < MULTI_THREAD_FROM else many)


@dataclass
class Training:
    """What the models were fitted on, in model coordinates."""

    x: torch.Tensor  # n x d encoded parameters
    y: torch.Tensor  # n x m: signed objectives, then constrained outcomes as measured
    yvar: torch.Tensor | None  # n x m squared standard errors, when every trial reported one
    names: tuple[str, ...]  # outcome of each column
    n_objectives: int
    warps: tuple[Warp, ...] = ()  # per column: y holds warp.forward(signed value)

    def warp(self, j: int) -> Warp:
        return self.warps[j] if self.warps else Warp()

    def head(self, k: int) -> Training:
        """The first ``k`` outcome columns, for a model that needs no others."""
        yvar = None if self.yvar is None else self.yvar[:, :k]
        return dataclasses.replace(
            self,
            y=self.y[:, :k],
            yvar=yvar,
            names=self.names[:k],
            n_objectives=min(self.n_objectives, k),
            warps=self.warps[:k],
        )


def tensor(values: Any) -> torch.Tensor:
    return torch.as_tensor(np.asarray(values, dtype=float), dtype=DTYPE)


def training_data(data: CampaignData, notes: list[str], warp: bool | None = None) -> Training:
    """The model's inputs and outcomes; ``warp`` overrides the campaign's ``warp_outcomes``."""
    spec = data.spec
    warp = bool(spec.strategy.warp_outcomes) if warp is None else warp
    objs = spec.objectives
    extra = [c.name for c in spec.outcome_constraints if c.name not in spec.objective_names]
    names = tuple(o.name for o in objs) + tuple(extra)
    signs = [o.sign for o in objs] + [1.0] * len(extra)
    x = tensor(data.space.encode_many([o.parameters for o in data.completed]))
    y = tensor(
        [
            [s * ob.outcomes[n][0] for n, s in zip(names, signs, strict=True)]
            for ob in data.completed
        ]
    )
    if len(data.completed) == 1:
        notes.append("only one observation: the model is its prior and the proposal explores")
    elif bool((y.std(dim=0) == 0).any()):
        flat = [n for n, sd in zip(names, y.std(dim=0).tolist(), strict=True) if sd == 0]
        notes.append(
            f"all observed values of {', '.join(flat)} are equal: the model of it is flat "
            "and the proposal is driven by its uncertainty"
        )
    sems = [[ob.outcomes[n][1] for n in names] for ob in data.completed]
    yvar = None
    if all(s is not None for row in sems for s in row):
        yvar = tensor(sems) ** 2
        # a reported error of zero makes the kernel matrix singular at repeated points
        var = y.var(dim=0) if len(y) > 1 else torch.ones(len(names), dtype=DTYPE)
        floor = 1e-6 * torch.where(var > 0, var, torch.ones_like(var))
        if bool((yvar < floor).any()):
            notes.append("standard errors below 1e-3 of the spread were raised to it")
        yvar = torch.maximum(yvar, floor)
    # winsorize: Ax's clip of each objective's bad tail, before any warp (off by default)
    if spec.strategy.options.get("winsorize", False):
        k = len(objs)
        floors = tensor([tukey_floor(y[:, j].numpy()) for j in range(k)])
        y = torch.cat([torch.maximum(y[:, :k], floors), y[:, k:]], dim=1)
    warps = tuple(
        Warp.fit(y[:, j].numpy()) if j < len(objs) and warp else Warp() for j in range(len(names))
    )
    if any(not w.linear for w in warps):
        signed = y
        y = torch.stack([w.forward(signed[:, j]) for j, w in enumerate(warps)], dim=-1)
        if yvar is not None:
            slopes = torch.stack([w.slope(signed[:, j]) for j, w in enumerate(warps)], dim=-1)
            yvar = yvar * slopes**2
    return Training(x, y, yvar, names, len(objs), warps)


SURROGATES = ("gp", "gp-matern", "forest")


def _gp(
    space: Space,
    x: torch.Tensor,
    y: torch.Tensor,
    yvar: torch.Tensor | None,
    kind: str = "gp",
    fitted_mean: bool = True,
) -> Model:
    """Inputs scaled to the unit cube, each outcome standardised.

    ``gp``: BoTorch's default priors (an RBF kernel whose lengthscale prior grows with
    the dimension) and a learned noise. ``gp-matern``: a Matern-5/2 kernel with a
    lengthscale per input, fitted by maximum likelihood without priors and with the
    noise fixed at 1 % of the outcome's variance, as Liang et al. (2021) fitted their
    GP with ARD. With several columns in ``y`` this is one batched model, an
    independent GP per column fitted in one optimisation.

    ``fitted_mean=False`` (``prior_mean: average``) fixes the ``gp`` kind's prior mean at
    the average of the observations (zero after standardising) instead of fitting a
    constant, which can settle below every observation and make every unvisited region
    look bad to the acquisition.
    """
    cont = [i for i in range(space.dim) if i not in space.cat_dims]
    bounds = tensor(space.bounds)
    normalize = Normalize(d=space.dim, indices=cont, bounds=bounds[:, cont]) if cont else None
    standardize = Standardize(m=y.shape[-1])
    if kind == "gp-matern" and yvar is None:
        yvar = 0.01 * (y.var(dim=0) if len(y) > 1 else torch.ones(y.shape[-1], dtype=DTYPE))
        yvar = yvar.clamp_min(1e-9).expand_as(y).clone()
    zero_mean = not fitted_mean and kind == "gp"
    if space.cat_dims:
        mixed = MixedSingleTaskGP(
            x,
            y,
            cat_dims=list(space.cat_dims),
            train_Yvar=yvar,
            input_transform=normalize,
            outcome_transform=standardize,
        )
        if zero_mean:  # the mixed GP takes no mean module; its constant is replaced
            mixed.mean_module = ZeroMean(batch_shape=_batch(y))
        return mixed
    covar = None
    if kind == "gp-matern":
        batch = _batch(y)
        covar = ScaleKernel(
            MaternKernel(nu=2.5, ard_num_dims=space.dim, batch_shape=batch), batch_shape=batch
        )
        covar.outputscale = 1.0  # GPy's starting values, as the paper's GP started
        covar.base_kernel.lengthscale = 1.0
    return SingleTaskGP(
        x,
        y,
        train_Yvar=yvar,
        covar_module=covar,
        mean_module=ZeroMean(batch_shape=_batch(y)) if zero_mean else None,
        input_transform=normalize,
        outcome_transform=standardize,
    )


def _batch(y: torch.Tensor) -> torch.Size:
    """The batch shape of one GP per outcome column (none for a single column)."""
    return torch.Size([y.shape[-1]]) if y.shape[-1] > 1 else torch.Size([])


def fit(
    data: CampaignData, notes: list[str], outcomes: int | None = None, kind: str = "gp"
) -> tuple[Model, Training, float]:
    """The GP of every outcome column (of the first ``outcomes`` when given); appends warnings.

    Up to MAX_FIT observations the columns share one batched model: one L-BFGS run
    over all of them took half the time of one run per column, at the same
    marginal likelihoods (two outcomes of a mixed space, 20 points: 0.7 s against
    1.4 s). Beyond, each column keeps its own subset of the best, so its own model.
    """
    t0 = time.perf_counter()
    set_threads(len(data.completed))
    tr = training_data(data, notes)
    if outcomes is not None:
        tr = tr.head(outcomes)
    m = tr.y.shape[1]
    if kind == "forest":
        model: Model = ForestModel(tr.x, tr.y, data.seed)
    elif m == 1 or len(tr.y) <= MAX_FIT:
        model = fit_columns(data, tr, list(range(m)), notes, kind)
    else:
        model = ModelListGP(*[fit_columns(data, tr, [j], notes, kind) for j in range(m)])  # type: ignore[arg-type]
    return model, tr, time.perf_counter() - t0


def fit_columns(
    data: CampaignData, tr: Training, cols: list[int], notes: list[str], kind: str = "gp"
) -> Model:
    """One (batched) GP of the outcome columns ``cols``; a subset fit beyond MAX_FIT rows."""
    y = tr.y[:, cols]
    yvar = tr.yvar[:, cols] if tr.yvar is not None else None
    n = len(y)
    if n > MAX_FIT and len(cols) > 1:
        raise ValueError("beyond MAX_FIT rows each column needs its own subset, so its own model")
    subset = _subset(y, data.seed, MAX_FIT) if n > MAX_FIT else None
    fitted_mean = data.spec.strategy.options.get("prior_mean", PRIOR_MEAN) == "fitted"
    model = _gp(data.space, *_rows(subset, tr.x, y, yvar), kind, fitted_mean)
    names = ", ".join(tr.names[j] for j in cols)
    try:
        # the mixed kernel's likelihood surface is flat in its category weights: L-BFGS
        # crawled for 600+ steps (7 s) to gains in the fourth digit; 100 steps suffice
        options = {"maxiter": 100} if data.space.cat_dims else {}
        fit_gpytorch_mll(
            ExactMarginalLogLikelihood(model.likelihood, model),
            optimizer_kwargs={"options": options},
        )
    except Exception as exc:  # a failed fit still leaves a usable model at the prior's values
        notes.append(f"fit of {names} failed, kept the prior's hyperparameters: {exc}")
    if subset is None:
        return model
    keep = _subset(y, data.seed + 1, MAX_CONDITION) if n > MAX_CONDITION else None
    notes.append(
        f"{names}: hyperparameters fitted on {len(subset)} of {n} points, the model "
        f"conditioned on {n if keep is None else len(keep)} (the best quarter and a seeded sample)"
    )
    full = _gp(data.space, *_rows(keep, tr.x, y, yvar), kind, fitted_mean)
    state = {k: v for k, v in model.state_dict().items() if "outcome_transform" not in k}
    full.load_state_dict(state, strict=False)
    return full


def _rows(
    index: torch.Tensor | None, x: torch.Tensor, y: torch.Tensor, yvar: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    if index is None:
        return x, y, yvar
    return x[index], y[index], None if yvar is None else yvar[index]


def _subset(y: torch.Tensor, seed: int, size: int) -> torch.Tensor:
    """The best quarter of ``size`` (where the optimum is being resolved) plus a seeded spread."""
    order = torch.argsort(y.reshape(-1), descending=True)
    best = order[: size // 4]
    rest = order[size // 4 :]
    g = torch.Generator().manual_seed(seed)
    pick = rest[torch.randperm(len(rest), generator=g)[: size - len(best)]]
    return torch.cat([best, pick]).sort().values


def baseline(tr: Training) -> torch.Tensor:
    """The observed points noisy EI/EHVI treat as incumbents.

    All of them up to MAX_BASELINE; beyond, the non-dominated ones topped up with
    the best by mean rank. Sampling the joint posterior of 5,000 baseline points
    took 13 s and 3 GB per proposal here; candidates for the incumbent are few.
    """
    if len(tr.x) <= MAX_BASELINE:
        return tr.x
    y = tr.y[:, : tr.n_objectives]
    front = is_non_dominated(y)
    ranks = y.argsort(dim=0, descending=True).argsort(dim=0).double().mean(dim=1)
    ranks[front] = -1.0  # the front first
    return tr.x[ranks.argsort()[:MAX_BASELINE]]


def outcome_constraints(
    data: CampaignData, tr: Training
) -> list[Callable[[torch.Tensor], torch.Tensor]]:
    """BoTorch constraint callables (feasible where <= 0) on the model's output samples."""
    out: list[Callable[[torch.Tensor], torch.Tensor]] = []
    for c in data.spec.outcome_constraints:
        j = tr.names.index(c.name)
        sign = data.spec.objective(c.name).sign if j < tr.n_objectives else 1.0
        direction = -1.0 if c.op == ">=" else 1.0  # >= b  <=>  b - v <= 0
        out.append(
            partial(
                _constraint, j=j, sign=sign, direction=direction, bound=c.bound, warp=tr.warp(j)
            )
        )
    return out


def _constraint(
    z: torch.Tensor, j: int, sign: float, direction: float, bound: float, warp: Warp
) -> torch.Tensor:
    value = z[..., j] if warp.linear else warp.inverse(z[..., j])
    return direction * (sign * value - bound)


def outputs(model: Model) -> list[tuple[Model, int | None]]:
    """Each outcome column's GP, and its index in the model's batch when it shares one."""
    models: list[Model] = list(model.models) if isinstance(model, ModelListGP) else [model]  # type: ignore[arg-type]
    out: list[tuple[Model, int | None]] = []
    for m in models:
        k = int(m.num_outputs)
        out.extend((m, i if k > 1 else None) for i in range(k))
    return out


def hyperparameters(model: Model, tr: Training) -> dict[str, Any]:
    """Plain floats an auditor can read without torch; noise in standardised units."""
    if isinstance(model, ForestModel):
        return {
            "forest": {"trees": len(model.forests[0].estimators_)},
            "importances": dict(zip(tr.names, model.importances(), strict=True)),
        }
    per: dict[str, Any] = {}
    for j, (name, (m, i)) in enumerate(zip(tr.names, outputs(model), strict=True)):

        def values(t: torch.Tensor, i: int | None = i) -> list[float]:
            t = t.detach()
            return [float(v) for v in (t if i is None else t[i]).reshape(-1).tolist()]

        out: dict[str, Any] = {}
        if not tr.warp(j).linear:
            out["outcome_warping"] = {"yeo_johnson_lambda": tr.warp(j).lam}
        for mod_name, module in m.named_modules():
            ls = getattr(module, "raw_lengthscale", None)
            if ls is not None and "covar_module" in mod_name + ".":
                out.setdefault("lengthscales", []).extend(values(module.lengthscale))
        noise = getattr(m.likelihood, "noise", None)
        if noise is not None:
            noises = values(noise)
            out["noise"] = noises[0] if len(noises) == 1 else noises[:5]
        mean = getattr(getattr(m, "mean_module", None), "constant", None)
        if mean is not None:
            out["mean_constant"] = values(mean)[0]
        per[name] = out
    if len(per) == 1:
        return next(iter(per.values()))
    return {"models": per}


def predict(
    data: CampaignData, model: Model, tr: Training, chosen: list[dict[str, Any]]
) -> list[dict[str, tuple[float, float]]]:
    """Posterior mean and sd of each objective, in the objective's own units.

    With a warped objective these are the posterior median and half its central
    68 % interval, mapped back: the warp keeps quantiles, not means.
    """
    if not chosen:
        return []
    with torch.no_grad():
        post: Any = model.posterior(tensor(data.space.encode_many(chosen)))
        mean, sd = post.mean, post.variance.clamp_min(0.0).sqrt()
    out: list[dict[str, tuple[float, float]]] = [{} for _ in chosen]
    for j, o in enumerate(data.spec.objectives):
        mu, s = unwarp(tr.warp(j), mean[:, j], sd[:, j])
        for i in range(len(chosen)):
            out[i][o.name] = (o.sign * float(mu[i]), float(s[i]))
    return out


def unwarp(warp: Warp, mean: torch.Tensor, sd: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A Gaussian prediction in warped units as (median, half 68 % interval) in signed units."""
    if warp.linear:
        return mean, sd
    return warp.inverse(mean), (warp.inverse(mean + sd) - warp.inverse(mean - sd)) / 2


def data_hash(data: CampaignData) -> str:
    """What the model saw, so an auditor can tell whether two proposals had the same data."""
    rows = sorted((o.trial_id, sorted(o.outcomes.items())) for o in data.completed)
    rows_failed = sorted(json.dumps(p, sort_keys=True) for p in data.failed)
    return hashlib.sha256(json.dumps([rows, rows_failed]).encode()).hexdigest()
