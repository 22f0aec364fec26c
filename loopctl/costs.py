"""What a campaign with several fidelities has spent, in the unit of its levels' costs.

Each dispatch of a trial costs its level's declared cost (``fidelities.levels[].cost``);
the attempt that completed it costs what its driver measured instead, when the driver
reported a ``cost`` with the result. Trials in flight are counted at their declared
cost, as if already spent: that is what lets the controller promise that the budget's
``cost`` is never exceeded (a trial is sent only if everything sent so far, plus it,
fits). An imported trial was never dispatched and costs nothing.

One pure function (:func:`committed`) over a few facts per trial, so that the
controller (reading the database) and the strategies (reading their fold of the log, for
a replayable ``cost_left``) cannot count differently.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from loopctl import lifecycle
from loopctl.spec_types import Fidelities


@dataclass(frozen=True)
class TrialCost:
    """What the cost of one trial depends on."""

    fidelity: str | None  # None: the target level (a suggestion names none)
    attempts: int  # dispatches so far (a trial handed back unmeasured gives one back)
    status: str  # its lifecycle status
    measured: float | None = None  # the cost its driver reported with the result

    @property
    def queued(self) -> bool:
        return self.status in (lifecycle.PROPOSED, lifecycle.APPROVED)

    @property
    def in_flight(self) -> bool:
        return self.status in (lifecycle.RUNNING, lifecycle.IN_DOUBT)


def level_cost(fidelities: Fidelities, level: str | None) -> float:
    return fidelities.cost(level or fidelities.target)


def trial_cost(fidelities: Fidelities, t: TrialCost) -> float:
    declared = level_cost(fidelities, t.fidelity)
    if t.status == lifecycle.COMPLETED and t.measured is not None and t.attempts > 0:
        return declared * (t.attempts - 1) + t.measured
    return declared * t.attempts


def committed(fidelities: Fidelities, trials: Mapping[str, TrialCost]) -> float:
    """Spent and reserved (in flight) cost of the campaign's trials."""
    return sum(trial_cost(fidelities, t) for t in trials.values())


def room(fidelities: Fidelities, budget: float, trials: Mapping[str, TrialCost]) -> float:
    """What the budget has left once the trials sent and those waiting to be sent are
    paid for: what new proposals may spend (the strategies' ``cost_left``)."""
    waiting = sum(level_cost(fidelities, t.fidelity) for t in trials.values() if t.queued)
    return budget - committed(fidelities, trials) - waiting


def fits(fidelities: Fidelities, budget: float | None, spent: float, level: str | None) -> bool:
    """May one more trial at ``level`` be sent without the total passing the budget? A
    relative tolerance of 1e-9 keeps sums of decimal costs (0.1 + 0.2) from refusing the
    last trial that exactly fills the budget."""
    if budget is None:
        return True
    return spent + level_cost(fidelities, level) <= budget * (1 + 1e-9)


def from_store(conn: object, fidelities: Fidelities) -> dict[str, TrialCost]:
    """Each trial's cost facts, read from a campaign database (``sqlite3.Connection``)."""
    import sqlite3

    assert isinstance(conn, sqlite3.Connection)
    level: dict[str, str] = {}
    measured: dict[str, float] = {}
    for tid, kind, payload in conn.execute(
        "SELECT trial_id, kind, payload FROM events "
        "WHERE kind IN ('trial_proposed', 'trial_completed') ORDER BY seq"
    ):
        p = json.loads(payload)
        if kind == "trial_proposed" and p.get("fidelity") is not None:
            level[tid] = p["fidelity"]
        elif kind == "trial_completed" and p.get("cost") is not None:
            measured[tid] = float(p["cost"])
    return {
        tid: TrialCost(level.get(tid), attempts, status, measured.get(tid))
        for tid, status, attempts in conn.execute("SELECT id, status, attempts FROM trials")
    }
