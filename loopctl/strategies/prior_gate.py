"""Whether this campaign's own trials say the prior helps: leave-one-out, warm against cold.

The multi-task GP learns one correlation per prior source, and with a handful of target
trials that correlation is barely identified: a source that agrees on some inputs and not
on others (Suzuki III->IV in bench/RESULTS-transfer.md: the same best ligands, the best
temperature 40 degrees apart) kept a high correlation while its proposals failed. So each
proposal also asks the data directly: both models, the transfer GP (prior rows and the
other target trials) and the campaign's plain GP (the other target trials alone), predict
each of the campaign's completed trials with that trial left out, and the prior is used
only if the transfer GP's mean log predictive density of those trials is at least the cold
GP's. Both densities are of the same values in the objective's own units, so a model is
rewarded for predicting the trials *and* for knowing how sure it is. The closed-form
leave-one-out (:func:`loopctl.strategies.selection.gp_leave_one_out`) keeps each model's
fitted hyperparameters and costs one matrix inverse. Deterministic: the same data and seed
give the same decision, so a replay makes the same proposal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from loopctl.strategies import selection, surrogate
from loopctl.strategies.base import CampaignData


@dataclass
class Gate:
    """The decision, the two scores it rests on, and why, for the proposal's diagnostics."""

    use_prior: bool
    warm: float
    cold: float
    reason: str

    def diagnostics(self) -> dict[str, Any]:
        return {
            "use_prior": self.use_prior,
            "loo_log_density": {"warm": round(self.warm, 6), "cold": round(self.cold, 6)},
            "reason": self.reason,
        }


def decide(
    data: CampaignData,
    warm: Any,
    target: torch.Tensor,
    scale: tuple[float, float],
    notes: list[str],
) -> Gate:
    """Compare the transfer GP ``warm`` (whose training rows flagged by ``target`` are this
    campaign's, standardised by ``scale`` = (mean, sd) of the signed objective) with the
    campaign's plain GP, on the leave-one-out density of the campaign's completed trials."""
    plain = surrogate.training_data(data, [], warp=False).head(1)
    y = plain.y[:, 0].numpy()
    cold_model = surrogate.fit_columns(data, plain, [0], notes, "gp")
    c_mean, c_var = selection.gp_leave_one_out(cold_model)
    w_mean, w_var = selection.gp_leave_one_out(warm)
    mask = target.numpy()
    mean0, sd0 = scale
    w_mean, w_var = w_mean[mask] * sd0 + mean0, w_var[mask] * sd0**2
    warm_score, cold_score = _density(y, w_mean, w_var), _density(y, c_mean, c_var)
    use = warm_score >= cold_score
    n = len(y)
    verdict = "the prior is used" if use else "the prior is set aside: the cold GP proposes"
    reason = (
        f"leave-one-out log density of this campaign's {n} trials: with the prior "
        f"{warm_score:.3f}, without {cold_score:.3f}; {verdict}"
    )
    return Gate(use, warm_score, cold_score, reason)


def _density(y: np.ndarray, mean: np.ndarray, var: np.ndarray) -> float:
    v = np.maximum(var, 1e-12)
    return float(np.mean(-0.5 * (np.log(2 * math.pi * v) + (y - mean) ** 2 / v)))
