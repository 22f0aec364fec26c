"""The trial lifecycle: which event may follow which status. The one table of it."""

from __future__ import annotations

from loopctl.errors import TrialError

PROPOSED, APPROVED, RUNNING, IN_DOUBT, COMPLETED, FAILED, ABANDONED, REJECTED = (
    "proposed",
    "approved",  # by an operator, when the campaign has execution.approval: manual
    "running",
    "in_doubt",  # was running when a controller died; its driver may still report
    "completed",
    "failed",
    "abandoned",
    "rejected",  # by an operator: never run, and kept from being proposed again
)
STATUSES = (PROPOSED, APPROVED, RUNNING, IN_DOUBT, COMPLETED, FAILED, ABANDONED, REJECTED)
OPEN = (PROPOSED, APPROVED, RUNNING, IN_DOUBT)  # pending points; counted against the budget
TERMINAL = (COMPLETED, FAILED, ABANDONED, REJECTED)

# event kind -> statuses it may be applied to
TRANSITIONS: dict[str, frozenset[str]] = {
    "trial_approved": frozenset({PROPOSED}),
    "trial_rejected": frozenset({PROPOSED, APPROVED}),
    "trial_dispatched": frozenset({PROPOSED, APPROVED}),
    # a result is accepted whenever it arrives for a trial that was sent out, even
    # after it was re-queued or given up on: a real measurement is never thrown away
    "trial_completed": frozenset({RUNNING, IN_DOUBT, PROPOSED, FAILED, ABANDONED}),
    "trial_failed": frozenset({RUNNING, IN_DOUBT}),
    "trial_in_doubt": frozenset({RUNNING}),
    "trial_reclaimed": frozenset({IN_DOUBT}),  # its driver came back still holding it
    "trial_interrupted": frozenset({RUNNING, IN_DOUBT}),
    "trial_abandoned": frozenset({PROPOSED, APPROVED, RUNNING, IN_DOUBT}),
    "trial_amended": frozenset({COMPLETED}),  # an operator's correction, kept in the log
    "trial_released": frozenset({RUNNING, IN_DOUBT}),  # put back unmeasured by its driver
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
