"""How well the campaign's model predicts: leave-one-out predictions of its GP.

Each completed trial's value predicted by the GP conditioned on every other result, with
the hyperparameters of one fit kept (closed form, from one inverse of the kernel matrix,
:func:`loopctl.strategies.selection.gp_leave_one_out`): the fit costs what a proposal's
does, the predictions little more. `loopctl report` draws them as a figure and the
dashboard as a chart; both only read the campaign.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from loopctl import ledger
from loopctl.space import Space
from loopctl.spec import Spec
from loopctl.store import Store

MIN_TRIALS = 4  # fewer results leave nothing to hold out worth showing


@dataclass(frozen=True)
class LeaveOneOut:
    """Per point: the observed value, and the prediction without it (mean, sd), in the
    objective's own units. ``trials`` names each point's trial when the model was
    conditioned on every result (beyond a few thousand it keeps a sample, then None)."""

    objective: str
    observed: np.ndarray
    predicted: np.ndarray
    sd: np.ndarray
    trials: list[str] | None
    completed: int  # results the campaign had
    notes: list[str]  # what the fit said (a subset fit, a failed fit)
    seconds: float  # fitting and predicting (torch's first import not counted)

    @property
    def within_2sd(self) -> float:
        """The share of observations inside their prediction's ±2 sd (about 95 % for a
        model whose uncertainty is honest)."""
        return float(np.mean(np.abs(self.predicted - self.observed) <= 2 * self.sd))


def leave_one_out(store: Store, spec: Spec) -> LeaveOneOut | None:
    """The campaign's GP checked by leaving each result out; None for several objectives
    or fewer than :data:`MIN_TRIALS` results. Imports torch (seconds, the first time)."""
    if len(spec.objectives) != 1:
        return None
    data = ledger.snapshot(store, spec, Space.for_spec(spec))
    if len(data.completed) < MIN_TRIALS:
        return None
    import torch

    from loopctl.strategies.botorch_gp import fit_model
    from loopctl.strategies.selection import gp_leave_one_out
    from loopctl.strategies.surrogate import unwarp

    t0 = time.perf_counter()  # after the imports: the first costs seconds, once per process
    notes: list[str] = []
    model: Any
    model, tr, _ = fit_model(data, notes)
    mean, var = gp_leave_one_out(model)  # warped, signed units (Standardize undone)
    warp = tr.warp(0)
    tf: Any = model.outcome_transform
    targets = model.train_targets.reshape(-1) * tf.stdvs.reshape(-1)[0] + tf.means.reshape(-1)[0]
    with torch.no_grad():
        median, half = unwarp(
            warp, torch.as_tensor(mean), torch.as_tensor(np.sqrt(np.maximum(var, 0.0)))
        )
        seen = targets if warp.linear else warp.inverse(targets)
    o = spec.objectives[0]
    observed = o.sign * seen.detach().numpy()
    ids = [ob.trial_id for ob in data.completed]
    return LeaveOneOut(
        objective=o.name,
        observed=observed,
        predicted=o.sign * median.numpy(),
        sd=half.numpy(),
        trials=ids if len(ids) == len(observed) else None,
        completed=len(data.completed),
        notes=notes,
        seconds=time.perf_counter() - t0,
    )
