"""The controller's decisions: dispatch, budget, retries, expiry and the end of a campaign.

Kept apart from the event loop so that each rule can be read in one place and tested as
a plain function: everything here is a function of a small frozen snapshot of the state,
with the time passed in, and returns what to do. Nothing here reads a clock, a socket or
the database; the controller gathers the state, asks, and records and sends the answer.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from loopctl import lifecycle

# ------------------------------------------------------------------ retries


def after_failure(attempts: int, retries: int, retryable: bool) -> str:
    """Status of a trial its driver reported failed after ``attempts`` dispatches: back to
    the queue while a retryable failure has retries left, otherwise failed for good."""
    return lifecycle.PROPOSED if retryable and attempts <= retries else lifecycle.FAILED


def after_interrupt(attempts: int, retries: int) -> str:
    """Status of a trial whose driver was lost or that timed out: an interruption is no
    verdict on the candidate, so it is abandoned (not failed) once the retries are used."""
    return lifecycle.PROPOSED if attempts <= retries else lifecycle.ABANDONED


# ------------------------------------------------------------------ budget


@dataclass(frozen=True)
class Budget:
    """The campaign's limits, fixed for a run."""

    target: int  # trials to complete
    max_in_flight: int
    max_failed: int
    wall_time: float | None = None  # seconds of this run; None or 0: no limit
    stop_at: float | None = None  # stop once the first objective's best reaches it
    sign: float = 1.0  # +1 when larger is better (the first objective's)
    ahead: int = 0  # candidates kept ready beyond max_in_flight (execution.ahead)


@dataclass(frozen=True)
class Tally:
    """Trials of this campaign's own (imports excluded: they cost nothing) by fate."""

    completed: int = 0
    failed: int = 0
    open: int = 0  # proposed, approved, running or in doubt: each will cost a trial

    @classmethod
    def of(cls, counts: Mapping[str, int]) -> Tally:
        return cls(
            completed=counts.get(lifecycle.COMPLETED, 0),
            failed=counts.get(lifecycle.FAILED, 0),
            open=sum(counts.get(s, 0) for s in lifecycle.OPEN),
        )


def proposals_wanted(budget: Budget, tally: Tally) -> int:
    """Candidates to ask the strategy for now (zero or less: none). Open trials count
    against the budget, so a campaign never proposes more than it may run.

    The batch is sized to the free capacity: while slots of ``max_in_flight`` have no open
    trial, just those. Only once every slot is taken come the ready candidates
    (:func:`ahead_wanted`), up to ``ahead`` waiting for a slot. Asking for both at once
    made every batch larger where proposals are the bottleneck (evaluations faster than
    a proposal: drivers wait for the model whatever the queue), and a campaign of 40
    trials then had fewer, larger batches and a worse final regret."""
    room = budget.target - tally.completed - tally.open
    free = budget.max_in_flight - tally.open
    return min(room, free) if free > 0 else ahead_wanted(budget, tally)


def ahead_wanted(budget: Budget, tally: Tally) -> int:
    """Ready candidates missing while every slot is taken (zero or less: none): at most
    ``ahead`` wait for a slot (later data could make a longer queue stale; see
    :func:`stale`), within the budget."""
    return min(
        budget.target - tally.completed - tally.open,
        budget.max_in_flight + budget.ahead - tally.open,
    )


def ahead_pays(
    proposal_s: float | None, trial_s: float | None, slots: int, refresh_after: int
) -> bool:
    """Whether ready candidates would still be fresh when used: a proposal of
    ``proposal_s`` seconds sees about ``proposal_s * slots / trial_s`` results arrive while
    it runs, and candidates that many results old are stale once that reaches
    ``refresh_after``. Where proposals are slower than that (evaluations faster than a
    proposal), drivers wait for the model with or without a queue, and ready candidates
    would only be chosen on older data: measured on 40-trial Hartmann 6 campaigns with 1 s
    evaluations, 8 seeds of 9 ended worse. Unknown durations (no proposal or result yet in
    this run) do not hold ahead back; ``refresh_after`` 0 (never stale) never does."""
    if proposal_s is None or trial_s is None or refresh_after <= 0:
        return True
    return proposal_s * slots < refresh_after * trial_s


def stale(ready: Mapping[str, int], news: Mapping[str, int], refresh_after: int) -> list[str]:
    """The ready candidates to propose again: those with at least ``refresh_after`` new
    results (``news``: trial -> results recorded since the data it was proposed from) among
    ``ready`` (trial -> that data's last event), oldest first; none when ``refresh_after``
    is 0. A count of results is the measure because it is what changes the model: a
    candidate proposed before them was chosen without knowing them."""
    if refresh_after <= 0:
        return []
    return sorted(
        (t for t in ready if news.get(t, 0) >= refresh_after), key=lambda t: (ready[t], t)
    )


def may_propose(stopping: bool, proposing: bool, now: float, propose_after: float) -> bool:
    """One proposal at a time, none while stopping or before a failed one's back-off ends."""
    return not stopping and not proposing and now >= propose_after


def exhausted(tally: Tally) -> bool:
    """The strategy had no new candidate: the campaign is over once nothing is open
    (while trials are open, their results may yet let it propose again)."""
    return tally.open == 0


@dataclass(frozen=True)
class Best:
    objective: str
    value: float


def finished(budget: Budget, tally: Tally, elapsed: float, best: Best | None) -> str | None:
    """Why the campaign is over, or None. Checked in this order, the first reason wins:
    completed trials, failed trials, wall time of this run, the stop condition on the
    best value so far. Open trials do not hold it up: once enough have completed, the
    rest are not waited for."""
    if tally.completed >= budget.target:
        return f"budget: {tally.completed} trials completed"
    if tally.failed >= budget.max_failed:
        return f"too many failures: {tally.failed} trials failed"
    if budget.wall_time and elapsed > budget.wall_time:
        return f"wall time of {budget.wall_time:g} s used"
    if (
        budget.stop_at is not None
        and best is not None
        and budget.sign * (best.value - budget.stop_at) >= 0
    ):
        return f"stop condition: {best.objective} reached {best.value:.6g}"
    return None


# ------------------------------------------------------------------ dispatch


@dataclass(frozen=True)
class Slot:
    """A connected driver as dispatch sees it. ``key`` is whatever the caller knows it by."""

    key: bytes
    free: int  # capacity minus trials it runs (negative if its capacity shrank)
    last_task: float  # monotonic time it was last given a task (0: never)
    ready: bool = True  # its connection said READY: it accepted the campaign's settings
    serves: frozenset[str] | None = None  # the fidelities it serves (None: all)

    def takes(self, fidelity: str | None) -> bool:
        return fidelity is None or self.serves is None or fidelity in self.serves


@dataclass(frozen=True)
class Assignment:
    trial: str
    driver: bytes


def assign(
    queued: Sequence[str],
    slots: Sequence[Slot],
    in_flight: int,
    max_in_flight: int,
    fidelity: Mapping[str, str | None] | None = None,
    affordable: Callable[[str], bool] | None = None,
) -> list[Assignment]:
    """Which queued trials go to which drivers now, in the order to send them.

    Oldest trial first, while fewer than ``max_in_flight`` run (in doubt ones count);
    each to the ready driver with the most free slots, and among equals to the one
    given a task longest ago, so that work spreads over all drivers instead of filling
    the first. A driver given a trial here counts as the most recently tasked, the later
    the more recent; remaining ties go to the first in ``slots``.

    With fidelities, a trial goes only to a driver that serves its level (``fidelity``:
    trial -> level), and only while ``affordable(trial)`` says the cost budget has room
    for it (called after each assignment, so it sees the ones made before); a trial that
    cannot go now is skipped and later ones may still go."""
    free = {s.key: s.free for s in slots}
    # (0, last_task) before this round; (1, n) once given the round's n-th trial
    recency: dict[bytes, tuple[int, float]] = {s.key: (0, s.last_task) for s in slots}
    out: list[Assignment] = []
    for tid in queued:
        if in_flight + len(out) >= max_in_flight:
            break
        open_slots = [s for s in slots if s.ready and free[s.key] > 0]
        if not open_slots:
            break
        if fidelity is not None:
            level = fidelity.get(tid)
            open_slots = [s for s in open_slots if s.takes(level)]
            if not open_slots or (affordable is not None and not affordable(tid)):
                continue
        d = min(open_slots, key=lambda s: (-free[s.key], recency[s.key]))
        free[d.key] -= 1
        recency[d.key] = (1, len(out))
        out.append(Assignment(tid, d.key))
    return out


@dataclass(frozen=True)
class TimeoutRule:
    """execution.trial_timeout: a fixed number of seconds, none, or (auto) learnt from
    the campaign's own trials: ``factor`` times the slowest result so far and at least
    ``floor``; ``first`` until a trial has completed."""

    auto: bool
    fixed: float | None
    first: float
    floor: float
    factor: float

    def seconds(self, longest: float | None) -> float | None:
        """Seconds a driver may hold a trial, given the longest completed trial so far."""
        if not self.auto:
            return self.fixed
        if longest is None:
            return self.first
        return max(self.floor, self.factor * longest)


def deadline(wall: float, timeout: float | None) -> float | None:
    """The wall-clock deadline a TASK sent at ``wall`` carries (None: none)."""
    return wall + timeout if timeout else None


# ------------------------------------------------------------------ expiry


def silent(last_seen: Mapping[bytes, float], now: float, heartbeat_timeout: float) -> list[bytes]:
    """Drivers (in the order given) silent for longer than the heartbeat timeout: lost."""
    return [k for k, seen in last_seen.items() if now - seen > heartbeat_timeout]


@dataclass(frozen=True)
class Held:
    """A running or in-doubt trial, as expiry sees it."""

    id: str
    status: str  # lifecycle.RUNNING or lifecycle.IN_DOUBT
    driver: str | None
    attempts: int
    deadline: float | None  # wall clock; for in-doubt trials, the end of their grace
    started_at: float | None  # wall clock


@dataclass(frozen=True)
class Expiry:
    """A held trial to interrupt, why, and what becomes of it (``status``: re-queued as
    proposed within the retries, abandoned beyond)."""

    trial: str
    reason: str
    status: str
    timed_out: bool  # past its deadline (its holder, if any, is sent CANCEL)


@dataclass(frozen=True)
class Expired:
    expiries: list[Expiry]
    orphans: dict[str, float]  # running trial -> monotonic time first seen with no driver


def expire(
    held: Iterable[Held],
    live: set[str],
    orphans: Mapping[str, float],
    now: float,
    wall: float,
    heartbeat_timeout: float,
    auto_timeout: float | None,
    retries: int,
) -> Expired:
    """Which held trials to settle now, in the order given.

    A running trial whose driver is not connected is an orphan: no driver can report it
    or be lost with it, so once it has been one for longer than the heartbeat timeout
    (``now``, monotonic, against when it was first seen so in ``orphans``) it is
    interrupted. Otherwise a trial is interrupted when the wall clock is past its
    deadline (strictly); with ``auto_timeout`` (the learnt timeout, for
    ``trial_timeout: auto``) a running trial's deadline is also at most its start plus
    that timeout, so trials sent out before any result are not left their first day.
    The orphans returned are every trial seen without its driver this time."""
    expiries: list[Expiry] = []
    seen: dict[str, float] = {}
    for t in held:
        running = t.status == lifecycle.RUNNING
        due = t.deadline
        if running and auto_timeout is not None and t.started_at is not None:
            due = min(due or math.inf, t.started_at + auto_timeout)
        if running and t.driver not in live:
            seen[t.id] = orphans.get(t.id, now)
            if now - seen[t.id] > heartbeat_timeout:
                why = f"its driver {t.driver} is not connected"
                expiries.append(Expiry(t.id, why, after_interrupt(t.attempts, retries), False))
                continue
        if due is not None and wall > due:
            why = (
                "in doubt and no driver claimed it in time"
                if t.status == lifecycle.IN_DOUBT
                else "trial timed out"
            )
            expiries.append(Expiry(t.id, why, after_interrupt(t.attempts, retries), True))
    return Expired(expiries, seen)
