"""Proposal engines behind one interface; model-based ones are imported lazily (torch)."""

from __future__ import annotations

import logging

from loopctl.spec import CompositionParam, Spec
from loopctl.strategies.base import CampaignData, Proposal, Strategy

__all__ = ["AutoStrategy", "initial_design_size", "make_strategy"]

log = logging.getLogger("loopctl.strategies")


def initial_design_size(spec: Spec) -> int:
    """Sobol trials before the first model: enough to fit a lengthscale per dimension."""
    if spec.strategy.initial_trials is not None:
        return spec.strategy.initial_trials
    free = 0
    for p in spec.space:
        if isinstance(p, CompositionParam):
            free += len(p.elements) - 1
        elif p.type != "fixed":
            free += 1
    return max(4, min(2 * free, spec.budget.trials // 3))


def _model_strategy(spec: Spec) -> Strategy:
    """Imports torch: only when a model is first needed."""
    if len(spec.objectives) > 1:
        from loopctl.strategies.botorch_mobo import MultiObjectiveStrategy

        return MultiObjectiveStrategy()
    from loopctl.strategies.botorch_gp import BotorchStrategy

    return BotorchStrategy()


class AutoStrategy:
    """Sobol for the initial design, then a GP with log-noisy EI; records why."""

    name = "auto"

    def __init__(self, spec: Spec) -> None:
        from loopctl.strategies.sobol import SobolStrategy

        self.n_initial = initial_design_size(spec)
        self.sobol = SobolStrategy()
        self._model: Strategy | None = None
        self.too_many = len(spec.objectives) > 4  # ParEGO-style scalarisation: not yet

    def model_free(self, completed: int, pending: int) -> bool:
        return completed == 0 or completed + pending < self.n_initial or self.too_many

    def propose(self, data: CampaignData, n: int) -> Proposal:
        seen = len(data.completed) + len(data.pending)
        if len(data.completed) == 0 or seen < self.n_initial:
            p = self.sobol.propose(data, n)
            reason = f"initial design: {seen} of {self.n_initial} trials"
        elif self.too_many:
            p = self.sobol.propose(data, n)
            reason = "more than four objectives: no model for that yet, using Sobol"
        else:
            if self._model is None:
                self._model = _model_strategy(data.spec)
            try:
                p = self._model.propose(data, n)
                what = (
                    "GP + log-noisy EI"
                    if len(data.spec.objectives) == 1
                    else f"{len(data.spec.objectives)} objectives: GPs + log-noisy EHVI"
                )
                reason = f"{len(data.completed)} observations: {what}"
            except Exception as exc:  # a campaign must not stall on a numerical failure
                log.warning("model-based proposal failed (%s); using Sobol this time", exc)
                p = self.sobol.propose(data, n)
                reason = f"the GP proposal failed ({type(exc).__name__}: {exc}); used Sobol"
        p.diagnostics["auto"] = {"picked": p.strategy, "reason": reason}
        return p


def make_strategy(spec: Spec) -> Strategy:
    """`botorch` and `auto` share the path (Sobol first, then the GP); `sobol` stays model-free."""
    if spec.strategy.method == "sobol":
        from loopctl.strategies.sobol import SobolStrategy

        return SobolStrategy()
    return AutoStrategy(spec)
