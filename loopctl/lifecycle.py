"""The trial lifecycle: which event may follow which status. The one table of it."""

from __future__ import annotations

from loopctl.errors import TrialError

PROPOSED, RUNNING, IN_DOUBT, COMPLETED, FAILED, ABANDONED = (
    "proposed",
    "running",
    "in_doubt",  # was running when a controller died; its driver may still report
    "completed",
    "failed",
    "abandoned",
)
STATUSES = (PROPOSED, RUNNING, IN_DOUBT, COMPLETED, FAILED, ABANDONED)
OPEN = (PROPOSED, RUNNING, IN_DOUBT)  # counted as pending points and against the budget
TERMINAL = (COMPLETED, FAILED, ABANDONED)

# event kind -> statuses it may be applied to
TRANSITIONS: dict[str, frozenset[str]] = {
    "trial_dispatched": frozenset({PROPOSED}),
    # a result is accepted whenever it arrives for a trial that was sent out, even
    # after it was re-queued or given up on: a real measurement is never thrown away
    "trial_completed": frozenset({RUNNING, IN_DOUBT, PROPOSED, FAILED, ABANDONED}),
    "trial_failed": frozenset({RUNNING, IN_DOUBT}),
    "trial_in_doubt": frozenset({RUNNING}),
    "trial_reclaimed": frozenset({IN_DOUBT}),  # its driver came back still holding it
    "trial_interrupted": frozenset({RUNNING, IN_DOUBT}),
    "trial_abandoned": frozenset({PROPOSED, RUNNING, IN_DOUBT}),
}


def check(kind: str, trial_id: str, status: str) -> None:
    allowed = TRANSITIONS[kind]
    if status not in allowed:
        verb = kind.removeprefix("trial_")
        raise TrialError(
            "bad_state",
            f"trial {trial_id} is {status}; it cannot be {verb} "
            f"(allowed from {', '.join(sorted(allowed))})",
        )
