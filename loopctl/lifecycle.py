"""The trial lifecycle: its statuses, and the check of which event may follow which."""

from __future__ import annotations

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

# Which event may follow which status is in the catalogue of event kinds
# (loopctl.events: each kind's ``allowed_from``), beside everything else the kind means;
# it imports these statuses, so it is looked up when first needed rather than imported here.


def check(kind: str, trial_id: str, status: str) -> None:
    """Refuse (TrialError ``bad_state``) an event a trial in ``status`` may not take."""
    from loopctl.events import check_transition

    check_transition(kind, trial_id, status)


def __getattr__(name: str) -> dict[str, frozenset[str]]:
    """``TRANSITIONS``, event kind -> statuses it may be applied to, read from the catalogue."""
    if name == "TRANSITIONS":
        from loopctl.events import transitions

        return transitions()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
