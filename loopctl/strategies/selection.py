"""Which surrogate to trust, decided by the campaign's own data.

Each candidate model is fitted to every completed trial and asked to predict
each trial without it: in closed form for a GP (the inverse of its kernel
matrix gives every leave-one-out mean and variance at once), from the trees
that did not see the trial for a forest (out-of-bag). Both cost nothing beyond
the fits. The score is the mean log predictive density of the held-out values,
in units of the outcome's spread, so that a model is rewarded for ranking the
trials right *and* for knowing how sure it is, which is what the acquisition
reads. Nothing depends on the dataset's name or size; the same data give the
same choice, so a replay makes the same proposal.

Leave-one-out scores every trial alike, although most of them were chosen by the
model itself near what it already knew. The ``prequential`` rule (the ``select_by``
option) scores instead the trajectory the campaign took: each of the last
:data:`WINDOW` trials predicted from the trials before it only, one step ahead,
as the acquisition had to. A GP that keeps sampling around a second-best basin
is confidently wrong about exactly those trials, and there the forest wins.
For the GP the one-step-ahead predictions all come from one Cholesky factor of
its kernel matrix in trial order (the prediction-error decomposition), with the
hyperparameters fitted on all trials; the forest is refitted on each prefix.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from botorch.models.model import Model
from scipy.stats import spearmanr

from loopctl.strategies import surrogate
from loopctl.strategies.base import CampaignData
from loopctl.strategies.forest import ForestModel, out_of_bag

MIN_POINTS = 10  # fewer observations say too little about any model: the GP is kept
CANDIDATES = ("gp", "forest")
WINDOW = 10  # prequential: the last trials scored, at most half of them
# the forests refitted on each prefix to score it: a quarter of the model's trees cost a
# quarter of the time (10 refits of 100 trees were 1.2 s CPU a proposal at 50 trials)
SCORING_TREES = 25
SELECT_BY = "loo"  # the ``select_by`` option's default
RULES = {"loo": "loo_log_density", "prequential": "prequential_log_density"}


@dataclass
class Choice:
    kind: str
    model: Model
    scores: dict[str, dict[str, float]]
    reason: str

    def diagnostics(self) -> dict[str, Any]:
        return {"chosen": self.kind, "scores": self.scores, "reason": self.reason}


def choose(
    data: CampaignData,
    tr: surrogate.Training,
    notes: list[str],
    candidates: Sequence[str] = CANDIDATES,
    rule: str = SELECT_BY,
) -> Choice:
    """The candidate with the best score under ``rule`` (a key of :data:`RULES`) on the
    first outcome column; every rule's scores are recorded whichever decides."""
    n = len(tr.y)
    if n < MIN_POINTS:
        model = surrogate.fit_columns(data, tr, list(range(tr.y.shape[1])), notes, "gp")
        return Choice("gp", model, {}, f"{n} observations, fewer than {MIN_POINTS}: the GP")
    scores: dict[str, dict[str, float]] = {}
    models: dict[str, Model] = {}
    y = tr.y[:, 0].detach().numpy()
    last = min(WINDOW, n // 2) if rule == "prequential" else 0
    for kind in candidates:
        if kind == "forest":
            forest = ForestModel(tr.x, tr.y, data.seed)
            mean, var = (a[:, 0] for a in out_of_bag(forest))
            models[kind] = forest
            ahead = forest_one_step_ahead(tr, data.seed, last)
        else:
            gp = surrogate.fit_columns(data, tr, list(range(tr.y.shape[1])), notes, kind)
            mean, var = gp_leave_one_out(gp)
            models[kind] = gp
            ahead = gp_one_step_ahead(gp, last)
        scores[kind] = score(y, mean, var)
        if last:
            spread = float(np.std(y)) or 1.0
            scores[kind]["prequential_log_density"] = density(y[-last:], *ahead, spread)
    key = RULES[rule]
    best = max(candidates, key=lambda k: scores[k][key])
    summary = ", ".join(f"{k} {scores[k][key]:.3f}" for k in candidates)
    what = (
        f"one-step-ahead log density per point on the last {last} of {n} observations"
        if last
        else f"leave-one-out log density per point on {n} observations"
    )
    return Choice(best, models[best], scores, f"{what}: {summary}")


def score(y: np.ndarray, mean: np.ndarray, var: np.ndarray) -> dict[str, float]:
    """Mean log predictive density with the outcome scaled to unit spread, and the rank
    correlation of the predictions with the truth (recorded, not used to choose)."""
    rho = spearmanr(mean, y).statistic if np.std(mean) > 0 else 0.0
    return {
        "loo_log_density": density(y, mean, var, float(np.std(y)) or 1.0),
        "rank_correlation": float(np.nan_to_num(rho)),
    }


def density(y: np.ndarray, mean: np.ndarray, var: np.ndarray, spread: float) -> float:
    """Mean Gaussian log density of ``y``, all in units of ``spread``."""
    z = (y - mean) / spread
    v = np.maximum(var / spread**2, 1e-9)
    return float(np.mean(-0.5 * (np.log(2 * math.pi * v) + z**2 / v)))


def gp_one_step_ahead(model: Model, last: int) -> tuple[np.ndarray, np.ndarray]:
    """Each of the last ``last`` training points predicted (mean, variance with noise) from
    the points before it, in the units of the training data, hyperparameters kept.

    With K = L L^T in trial order, the prediction error of point i given points < i is
    L[i, i] times the i-th entry of L^-1 (y - mu), and its variance L[i, i]^2.
    """
    if not last:
        return np.zeros(0), np.zeros(0)
    gp: Any = model
    cov, mu, targets = _noisy_prior(gp)
    with torch.no_grad():
        chol = torch.linalg.cholesky(cov)
        white = torch.linalg.solve_triangular(chol, (targets - mu).unsqueeze(-1), upper=False)
        diag = torch.diagonal(chol)
        mean = targets - diag * white.squeeze(-1)
        var = diag**2
    std, shift = _outcome_std(gp), _outcome_mean(gp)
    return (mean * std + shift).numpy()[-last:], (var * std**2).numpy()[-last:]


def forest_one_step_ahead(
    tr: surrogate.Training, seed: int, last: int
) -> tuple[np.ndarray, np.ndarray]:
    """Each of the last ``last`` training points predicted by a forest of SCORING_TREES trees
    (calibrated as the model is) fitted on the points before it: first outcome column."""
    n = len(tr.y)
    means, variances = [], []
    for i in range(n - last, n):
        post = ForestModel(tr.x[:i], tr.y[:i], seed, SCORING_TREES).posterior(tr.x[i : i + 1])
        means.append(float(post.mean.reshape(-1)[0]))
        variances.append(float(post.variance.reshape(-1)[0]))
    return np.array(means), np.array(variances)


def gp_leave_one_out(model: Model) -> tuple[np.ndarray, np.ndarray]:
    """Every leave-one-out mean and variance of the first output, in the units of the
    training data, from one inverse of the kernel matrix (hyperparameters kept)."""
    gp: Any = model
    cov, mu, targets = _noisy_prior(gp)
    with torch.no_grad():
        inv = torch.cholesky_inverse(torch.linalg.cholesky(cov))
        alpha = inv @ (targets - mu)
        diag = torch.diagonal(inv)
        loo_mean = targets - alpha / diag
        loo_var = 1.0 / diag
    std = _outcome_std(gp)
    shift = _outcome_mean(gp)
    return (loo_mean * std + shift).numpy(), (loo_var * std**2).numpy()


def _noisy_prior(gp: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The prior covariance of the noisy training outcomes, their prior mean and the
    training targets (the first outcome column of a batched model), in the model's units:
    what both closed-form scores (leave-one-out, one step ahead) start from."""
    gp.train()
    try:
        with torch.no_grad():
            noisy = gp.likelihood(gp(*gp.train_inputs), gp.train_inputs)
            cov, mu, targets = noisy.covariance_matrix, noisy.mean, gp.train_targets
    finally:
        gp.eval()
    if cov.dim() == 3:
        cov, mu, targets = cov[0], mu[0], targets[0]
    return cov, mu, targets


def _outcome_std(gp: Any) -> torch.Tensor:
    t = getattr(gp, "outcome_transform", None)
    return t.stdvs.reshape(-1)[0] if t is not None else torch.tensor(1.0, dtype=torch.float64)


def _outcome_mean(gp: Any) -> torch.Tensor:
    t = getattr(gp, "outcome_transform", None)
    return t.means.reshape(-1)[0] if t is not None else torch.tensor(0.0, dtype=torch.float64)


def fit(
    data: CampaignData,
    notes: list[str],
    outcomes: int | None,
    kind: str,
    warp: bool | str = True,
) -> tuple[Model, surrogate.Training, float, dict[str, Any]]:
    """The model a proposal uses, and what was chosen and why, for the diagnostics.

    ``kind`` is the campaign's ``surrogate`` option; ``auto`` chooses by
    :func:`choose` when one outcome column is modelled, and keeps the GP when
    outcome constraints need their own columns (the forest has no joint posterior
    for them to share). ``warp`` is the ``warp_outcomes`` in force: with ``auto`` the
    warped GP is kept only if it predicts better than the plain one (:func:`_warp_or_not`).
    """
    if kind != "auto":
        t0 = time.perf_counter()
        model, tr, _ = surrogate.fit(data, notes, outcomes, kind)
        why: dict[str, Any] = {"chosen": kind, "reason": "the campaign's surrogate option"}
        if kind != "forest":
            model, tr, why = _warp_or_not(data, notes, model, tr, kind, why, warp)
        return model, tr, time.perf_counter() - t0, why
    t0 = time.perf_counter()
    surrogate.set_threads(len(data.completed))
    tr = surrogate.training_data(data, notes)
    if outcomes is not None:
        tr = tr.head(outcomes)
    if tr.y.shape[1] > 1 or len(tr.y) > surrogate.MAX_FIT:
        model, tr, seconds = surrogate.fit(data, notes, outcomes, "gp")
        because = "several outcome columns" if tr.y.shape[1] > 1 else "a large campaign"
        return model, tr, seconds, {"chosen": "gp", "reason": f"{because}: the GP"}
    rule = str(data.spec.strategy.options.get("select_by", SELECT_BY))
    choice = choose(data, tr, notes, rule=rule)
    model, why = choice.model, choice.diagnostics()
    if choice.kind != "forest":
        model, tr, why = _warp_or_not(data, notes, model, tr, choice.kind, why, warp)
    return model, tr, time.perf_counter() - t0, why


def _warp_or_not(
    data: CampaignData,
    notes: list[str],
    warped: Model,
    tr: surrogate.Training,
    kind: str,
    why: dict[str, Any],
    warp: bool | str,
) -> tuple[Model, surrogate.Training, dict[str, Any]]:
    """With ``warp_outcomes: auto``, the warped GP or the plain one, whichever predicts each
    trial left out better, both scored as densities of the objective in its own units.

    The warp suits objectives with a long tail (it won on Branin and rugged grids) and
    hurts smooth ones it bends (Hartmann 6); the campaign's own data tell which it has.
    Only a single modelled column is compared (a warped constraint column would need its
    own choice), only when the warp is not the identity, and up to MAX_FIT observations.
    """
    # beyond MAX_FIT the GP is fitted on a subset, whose rows leave-one-out would need
    if warp != "auto" or tr.y.shape[1] != 1 or tr.warp(0).linear or len(tr.y) > surrogate.MAX_FIT:
        return warped, tr, why
    plain_tr = surrogate.training_data(data, [], warp=False).head(1)
    plain = surrogate.fit_columns(data, plain_tr, [0], notes, kind)
    y = plain_tr.y[:, 0]
    scores = {
        "plain": _density(plain, plain_tr.y[:, 0], torch.zeros_like(y)),
        # the warp's log slope turns a density of warped values into one of the objective's
        "warped": _density(warped, tr.y[:, 0], torch.log(tr.warp(0).slope(y))),
    }
    chosen = "plain" if scores["plain"] > scores["warped"] else "warped"
    why = why | {"warp": {"chosen": chosen, "loo_log_density": scores}}
    return (plain, plain_tr, why) if chosen == "plain" else (warped, tr, why)


def _density(model: Model, targets: torch.Tensor, log_slope: torch.Tensor) -> float:
    mean, var = gp_leave_one_out(model)
    v = np.maximum(var, 1e-12)
    density = -0.5 * (np.log(2 * math.pi * v) + (targets.numpy() - mean) ** 2 / v)
    return float(np.mean(density + log_slope.numpy()))
