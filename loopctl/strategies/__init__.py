"""Proposal engines behind one interface; model-based ones are imported lazily (torch)."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from typing import Any

from loopctl.spec import CompositionParam, Spec
from loopctl.strategies.base import CampaignData, Candidate, ModelStrategy, Proposal, Strategy

__all__ = [
    "AutoStrategy",
    "initial_design_size",
    "make_strategy",
    "model_plan",
    "planned_acquisition",
]

log = logging.getLogger("loopctl.strategies")


def initial_design_size(spec: Spec) -> int:
    """Trials before the first model: 4 up to six free dimensions, then one per two more.

    The GP's dimension-scaled lengthscale prior makes a model from a handful of points
    useful, and after that its acquisition explores better than Sobol does: with twice
    the dimension (11 of 35 trials on Hartmann6) the median final log10 regret over 20
    seeds was -0.88; with 7 trials -1.25 and with 5 (Ax's Client's number) -1.48.
    """
    if spec.strategy.initial_trials is not None:
        return spec.strategy.initial_trials
    free = 0
    for p in spec.space:
        if isinstance(p, CompositionParam):
            free += len(p.elements) - 1
        elif p.type != "fixed":
            free += 1
    return max(4, min(free // 2 + 2, spec.budget.trials // 3))


MAX_EHVI_OBJECTIVES = 4  # EHVI's cost grows exponentially with the objectives; ParEGO beyond


def model_plan(spec: Spec) -> tuple[str, str]:
    """Which model follows the initial design (``nsga2``, ``mobo`` or ``botorch``) and why;
    free of torch, so that ``loopctl validate`` can say it too."""
    method, m = spec.strategy.method, len(spec.objectives)
    if spec.fidelities is not None:
        return "multifidelity", (
            f"{len(spec.fidelities.levels)} fidelities: a multi-task GP over the levels + "
            f"augmented EI of {spec.fidelities.target} per unit cost"
        )
    if spec.prior:
        k = len(spec.prior)
        return "transfer", (
            f"{k} prior source{'s' if k > 1 else ''}: a multi-task GP (this campaign and each "
            "source a task, their correlation learned) + log-noisy EI of this campaign"
        )
    if method == "nsga2":
        return "nsga2", f"{m} objectives: NSGA-II over the GPs' predictions"
    if m > MAX_EHVI_OBJECTIVES:
        return "mobo", f"{m} objectives: GPs + ParEGO (EHVI grows exponentially beyond 4)"
    if m > 1:
        return "mobo", f"{m} objectives: GPs + log-noisy EHVI"
    acq = planned_acquisition(spec)
    model = SURROGATE_TEXT[str(spec.strategy.options.get("surrogate", "gp"))]
    if acq == "ucb" and "acquisition" not in spec.strategy.options:
        return (
            "botorch",
            f"one objective over a pool: {model} + UCB (log-noisy EI once a trial fails)",
        )
    return "botorch", f"one objective: {model} + {'UCB' if acq == 'ucb' else 'log-noisy EI'}"


SURROGATE_TEXT = {
    "gp": "GP",
    "gp-matern": "Matern GP without priors",
    "forest": "random forest",
    "auto": "GP or random forest (chosen by leave-one-out at each proposal)",
}


def planned_acquisition(spec: Spec) -> str:
    """One objective's acquisition before any trial fails: the ``acquisition`` option, else
    UCB over a pool without outcome constraints, else log-noisy EI (the measurements behind
    the rule: ``botorch_gp.acquisition_choice``, which also turns to EI after a failure)."""
    chosen = spec.strategy.options.get("acquisition")
    if chosen is not None:
        return str(chosen)
    return "ucb" if spec.pool is not None and not spec.outcome_constraints else "ei"


def _model_strategy(spec: Spec) -> tuple[ModelStrategy, str]:
    """The model after the initial design, and why; imports torch only when first needed."""
    kind, why = model_plan(spec)
    if kind == "multifidelity":
        from loopctl.strategies.multifidelity import MultiFidelityStrategy

        return MultiFidelityStrategy(), why
    if kind == "transfer":
        from loopctl.strategies.transfer import TransferStrategy

        return TransferStrategy(), why
    if kind == "nsga2":
        from loopctl.strategies.nsga2 import Nsga2Strategy

        return Nsga2Strategy(), why
    if kind == "mobo":
        from loopctl.strategies.botorch_mobo import MultiObjectiveStrategy

        return MultiObjectiveStrategy(), why
    from loopctl.strategies.botorch_gp import BotorchStrategy

    return BotorchStrategy(), why


class AutoStrategy:
    """Sobol for the initial design, then the model chosen by :func:`_model_strategy`;
    every proposal records what was picked and why."""

    name = "auto"

    def __init__(self, spec: Spec) -> None:
        from loopctl.strategies.sobol import SobolStrategy

        self.spec = spec
        self.n_initial = initial_design_size(spec)
        self.sobol = SobolStrategy()
        self._model: tuple[ModelStrategy, str] | None = None

    def prepare(self) -> None:
        self._model_strategy()  # even a short campaign may resume on imported data

    def model_free(self, completed: int, pending: int) -> bool:
        return completed == 0 or completed + pending < self.n_initial

    def _centre(self, data: CampaignData) -> Mapping[str, Any] | None:
        """The first trial of a fresh campaign: the middle of every range (geometric on a log
        scale), equal shares above each element's lower bound, the middle choice.

        Scientists set bounds around what they expect to work, so the centre is rarely a
        wasted trial, and Ax's Client starts there too: without it loopctl began DTLZ2,
        whose optimal set passes through the centre, a whole initial design behind Ax.
        """
        space = data.space
        fresh = not (data.completed or data.pending or data.failed or data.proposal_index)
        if not fresh or space.pool or not self.spec.strategy.options.get("center_point", True):
            return None
        centre = space.centre()
        return None if space.violated(centre) else centre

    def _model_strategy(self) -> tuple[ModelStrategy, str]:
        if self._model is None:
            self._model = _model_strategy(self.spec)
        return self._model

    def propose(self, data: CampaignData, n: int) -> Proposal:
        seen = len(data.completed) + len(data.pending)
        if len(data.completed) == 0 or seen < self.n_initial:
            centre = self._centre(data)
            if centre is None:
                p = self.sobol.propose(data, n)
            else:  # the rest of the batch must not repeat it (discrete spaces)
                rest = dataclasses.replace(data, pending=(*data.pending, centre))
                p = self.sobol.propose(rest, n - 1)
                p.candidates.insert(0, Candidate(dict(centre)))
            reason = f"initial design: {seen} of {self.n_initial} trials"
            if centre is not None:
                reason += ", the first at the centre of the space"
            if data.space.pool:
                reason += " (random pool rows)"
        else:
            model, why = self._model_strategy()
            try:
                p = model.propose(data, n)
                reason = f"{len(data.completed)} observations; {why}"
                if data.space.pool:
                    reason += f", maximised over the {len(data.space.pool)}-row pool"
            except Exception as exc:  # a campaign must not stall on a numerical failure
                log.warning("model-based proposal failed (%s); using Sobol this time", exc)
                p = self.sobol.propose(data, n)
                reason = (
                    f"the {model.name} proposal failed ({type(exc).__name__}: {exc}); used Sobol"
                )
        if self.spec.fidelities is not None and any(c.fidelity is None for c in p.candidates):
            reason += initial_levels(data, p.candidates, seen)  # the design, or Sobol instead
        p.diagnostics["auto"] = {"picked": p.strategy, "reason": reason}
        return p


TARGET_EVERY = 3  # initial design with fidelities: every third trial at the target level


def initial_levels(data: CampaignData, candidates: list[Candidate], seen: int) -> str:
    """The levels of an initial design's candidates, set in place: the cheapest level, and
    every third trial the target, so the shared model has both to learn how they relate
    from; a candidate the cost budget has no room for is dropped. Returns the words for
    the proposal's reason ("" without fidelities)."""
    fid = data.spec.fidelities
    if fid is None:
        return ""
    left = data.cost_left
    kept: list[Candidate] = []
    for i, c in enumerate(candidates):
        level = fid.target if (seen + i) % TARGET_EVERY == TARGET_EVERY - 1 else fid.cheapest
        if left is not None and fid.cost(level) > left * (1 + 1e-9):
            level = fid.cheapest
        if left is not None and fid.cost(level) > left * (1 + 1e-9):
            break
        c.fidelity = level
        kept.append(c)
        if left is not None:
            left -= fid.cost(level)
    candidates[:] = kept
    return f"; at {fid.cheapest}, every {TARGET_EVERY}rd trial at the target {fid.target}"


def make_strategy(spec: Spec) -> Strategy:
    """`sobol` and `ax` stand alone; the others start with a Sobol design, then their model."""
    if spec.strategy.method == "sobol":
        from loopctl.strategies.sobol import SobolStrategy

        return SobolStrategy()
    if spec.strategy.method == "ax":
        from loopctl.strategies.ax_backend import AxStrategy

        return AxStrategy()
    return AutoStrategy(spec)
