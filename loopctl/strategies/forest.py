"""A random forest as a BoTorch model: mean and spread of its trees' predictions.

A GP assumes the objective varies smoothly at one scale per parameter. Lab data
on a grid of a few levels, with steps, plateaus and interactions, often does not,
and a forest needs no such assumption: Liang et al. (2021) found a random forest
of 100 trees as good as a GP with ARD on five materials datasets, and steadier
across seeds. Its uncertainty is the spread of the trees, which the acquisition
functions read like a GP's posterior variance (independent across points).

The raw spread is overconfident: where every tree learnt the same step, the trees
agree to the last digit, and a single surprise then weighs like a thousand. The
predictive variance is therefore c * spread + s^2, with c and s^2 those under
which the out-of-bag errors (each training point predicted by the trees that did
not see it) are most likely: the spread says where the forest is unsure, s^2 how
wrong it is anyway.

Pending points are handled as a believer would: the forest is refitted with
them measured at its own mean, so their trees agree and the spread there shrinks.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from botorch.models.model import Model
from botorch.posteriors.gpytorch import GPyTorchPosterior
from gpytorch.distributions import MultitaskMultivariateNormal, MultivariateNormal

from loopctl.import_guard import without

with without("pandas"):  # scikit-learn would load pandas and pyarrow (65 MB) for nothing
    from sklearn.ensemble import RandomForestRegressor

TREES = 100
VARIANCE_FLOOR = 1e-6  # relative to the outcome's variance: all trees agreeing is not certainty


class ForestModel(Model):
    """One forest per outcome column, fitted on the encoded training data."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, seed: int, trees: int = TREES) -> None:
        super().__init__()
        self.train_x, self.train_y, self.seed, self.trees = x, y, seed, trees
        self.forests = [_forest(x, y[:, j], seed, trees) for j in range(y.shape[1])]
        spread = y.var(dim=0) if len(y) > 1 else torch.ones(y.shape[1], dtype=y.dtype)
        self.floor = VARIANCE_FLOOR * torch.where(spread > 0, spread, torch.ones_like(spread))
        self.scale = torch.ones(y.shape[1], dtype=y.dtype)
        if len(y) > 2:
            mean, var = out_of_bag(self)
            fitted = [
                _calibrate((y[:, j].detach().numpy() - mean[:, j]) ** 2, var[:, j])
                for j in range(y.shape[1])
            ]
            self.scale = torch.tensor([c for c, _ in fitted], dtype=y.dtype)
            self.floor = self.floor + torch.tensor([s2 for _, s2 in fitted], dtype=y.dtype)

    @property
    def num_outputs(self) -> int:
        return len(self.forests)

    def tree_predictions(self, x: torch.Tensor) -> torch.Tensor:
        """trees x n x m predictions of ``x`` (n x d)."""
        xs = x.detach().cpu().numpy()
        per = [np.stack([t.predict(xs) for t in f.estimators_]) for f in self.forests]
        return torch.as_tensor(np.stack(per, axis=-1), dtype=x.dtype)

    def posterior(
        self,
        X: torch.Tensor,
        output_indices: list[int] | None = None,
        observation_noise: bool | torch.Tensor = False,
        posterior_transform: Any = None,
        **kwargs: Any,
    ) -> GPyTorchPosterior:
        batch = X.shape[:-1]
        trees = self.tree_predictions(X.reshape(-1, X.shape[-1]))
        mean = trees.mean(dim=0)
        var = trees.var(dim=0) * self.scale + self.floor
        if output_indices is not None:
            mean, var = mean[:, output_indices], var[:, output_indices]
        mean = mean.reshape(*batch, mean.shape[-1])
        var = var.reshape(*batch, var.shape[-1])
        if mean.shape[-1] == 1:
            mvn = MultivariateNormal(mean[..., 0], torch.diag_embed(var[..., 0]))
        else:
            mvn = MultitaskMultivariateNormal(
                mean, torch.diag_embed(var.reshape(*batch[:-1], -1)), interleaved=True
            )
        posterior = GPyTorchPosterior(mvn)
        if posterior_transform is not None:
            return posterior_transform(posterior)
        return posterior

    def condition_on_observations(self, X: torch.Tensor, Y: torch.Tensor, **kwargs: Any) -> Model:
        """The believer: refitted with ``X`` measured at ``Y`` (its own predictions)."""
        x = torch.cat([self.train_x, X.reshape(-1, X.shape[-1])])
        y = torch.cat([self.train_y, Y.reshape(-1, self.train_y.shape[-1])])
        return ForestModel(x, y, self.seed, self.trees)

    def importances(self) -> list[list[float]]:
        """Per outcome, how much each encoded input reduces the trees' error."""
        return [[float(v) for v in f.feature_importances_] for f in self.forests]


def _calibrate(squared_errors: np.ndarray, spread: np.ndarray) -> tuple[float, float]:
    """(c, s^2) maximising the Gaussian likelihood of the errors under c * spread + s^2."""
    from scipy.optimize import minimize

    level = float(np.mean(squared_errors)) + 1e-12

    def nll(theta: np.ndarray) -> float:
        v = np.exp(theta[0]) * spread + np.exp(theta[1]) * level
        return float(np.sum(np.log(v) + squared_errors / v))

    best = minimize(nll, np.array([0.0, -1.0]), method="L-BFGS-B", bounds=[(-9, 9), (-12, 3)])
    return float(np.exp(best.x[0])), float(np.exp(best.x[1]) * level)


def _forest(x: torch.Tensor, y: torch.Tensor, seed: int, trees: int) -> RandomForestRegressor:
    forest = RandomForestRegressor(n_estimators=trees, random_state=seed % 2**32, n_jobs=1)
    forest.fit(x.detach().cpu().numpy(), y.detach().cpu().numpy())
    return forest


def out_of_bag(model: ForestModel) -> tuple[np.ndarray, np.ndarray]:
    """Each training point predicted by the trees that did not see it: (mean, var), n x m,
    the variance scaled as the model's is.

    The forest's own cross-validation, free of refits; a point every tree saw (rare
    beyond a handful of points) gets the whole forest's prediction.
    """
    x = model.train_x.detach().cpu().numpy()
    n = len(x)
    means, variances = [], []
    for forest in model.forests:
        preds = np.stack([t.predict(x) for t in forest.estimators_])  # trees x n
        out = np.ones_like(preds, dtype=bool)
        for k, rows in enumerate(forest.estimators_samples_):
            out[k, rows] = False
        counts = out.sum(axis=0)
        use = np.where(counts[None, :] > 1, out, True)
        weight = use / use.sum(axis=0)
        mean = (preds * weight).sum(axis=0)
        var = ((preds - mean) ** 2 * weight).sum(axis=0)
        means.append(mean)
        variances.append(var)
    floor = model.floor.detach().cpu().numpy()
    scale = model.scale.detach().cpu().numpy()
    return np.stack(means, axis=-1).reshape(n, -1), np.stack(variances, axis=-1) * scale + floor
