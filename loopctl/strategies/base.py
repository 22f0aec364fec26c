"""The one interface every proposal engine implements.

A strategy sees plain data (no database, no sockets) and returns candidates
with the diagnostics an auditor needs. Same data and seed -> same candidates.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from loopctl.spec import Spec

if TYPE_CHECKING:  # only annotations: `status` reaches this module and must not load numpy
    from loopctl.space import Space


@dataclass(frozen=True)
class Observation:
    """A completed trial as a strategy sees it: outcomes are (mean, sem or None)."""

    trial_id: str
    parameters: Mapping[str, Any]
    outcomes: Mapping[str, tuple[float, float | None]]
    fidelity: str | None = None  # campaigns with `fidelities`: the level it was measured at


@dataclass(frozen=True)
class CampaignData:
    spec: Spec
    space: Space
    completed: tuple[Observation, ...]
    failed: tuple[Mapping[str, Any], ...]  # parameters of trials that failed for good
    pending: tuple[Mapping[str, Any], ...]  # proposed, running or in-doubt candidates
    proposal_index: int  # how many proposals this campaign has recorded before this one
    sobol_drawn: int  # Sobol points consumed by earlier proposals (keeps the sequence going)
    as_of: int = 0  # the last event this data reflects: replaying the log to it rebuilds it
    rejected: tuple[Mapping[str, Any], ...] = ()  # turned down by an operator: avoid them
    # campaigns with `fidelities`: the level of each pending candidate (in `pending`'s
    # order), and the cost the budget has left once the trials in flight are paid for
    pending_fidelity: tuple[str | None, ...] = ()
    cost_left: float | None = None

    def fidelity_of(self, level: str | None) -> str | None:
        """A trial's level; one that names none (a suggestion) is at the target level."""
        f = self.spec.fidelities
        return None if f is None else level or f.target

    @property
    def seed(self) -> int:
        """Seed of this proposal: derived, so a replay needs only the campaign seed."""
        return self.spec.seed * 100_003 + self.proposal_index


@dataclass
class Candidate:
    parameters: dict[str, Any]
    predicted: dict[str, tuple[float, float]] | None = None  # objective -> (mean, sd)
    acquisition: float | None = None
    fidelity: str | None = None  # campaigns with `fidelities`: the level to measure it at


@dataclass
class Proposal:
    strategy: str
    version: str
    seed: int
    candidates: list[Candidate]
    diagnostics: dict[str, Any] = field(default_factory=dict)
    sobol_drawn: int = 0  # Sobol points this proposal consumed


class ModelStrategy(Protocol):
    """A model-based engine `auto` hands over to after its initial design."""

    name: str

    def propose(self, data: CampaignData, n: int) -> Proposal: ...


class Strategy(ModelStrategy, Protocol):
    """What the controller and ``Campaign`` drive: one of these per campaign."""

    def model_free(self, completed: int, pending: int) -> bool:
        """True when the next proposal fits no model and takes microseconds: the
        controller then proposes inline instead of in a worker thread."""
        ...

    def prepare(self) -> None:
        """Import what later proposals need (torch, BoTorch, Ax) now, before the
        controller serves drivers: loading a compiled library holds the GIL, and
        doing it in the first proposal's worker thread froze the event loop for
        half a second."""
        ...
