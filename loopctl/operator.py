"""Operator commands on a campaign: approve, reject, suggest, pause, unpause.

The same function records them whether the controller runs (it receives a
COMMAND on its socket and applies it in its own transaction) or not (the CLI
opens the database itself), so both paths leave the same events.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from loopctl import ledger
from loopctl.errors import ValidationError
from loopctl.space import Space
from loopctl.spec import Spec
from loopctl.store import Batch

ACTIONS = ("approve", "reject", "suggest", "pause", "unpause")


def apply_command(b: Batch, spec: Spec, space: Space, body: Mapping[str, Any]) -> str:
    """Record one operator command; returns what was done, in words."""
    action, operator = body["action"], body["operator"]
    trials = list(body.get("trials") or [])
    if action in ("approve", "reject"):
        if not trials:
            raise ValidationError(f"{action}: name at least one trial")
        if action == "reject" and not body.get("reason"):
            raise ValidationError("reject: give a --reason (it is kept with the trial)")
        for tid in trials:
            ledger.record_approval(b, tid, action == "approve", operator, body.get("reason", ""))
        return f"{action.rstrip('e')}ed {', '.join(trials)}"
    if action == "suggest":
        tid = ledger.record_suggestion(b, spec, space, body.get("parameters") or {}, operator)
        return f"suggested {tid}"
    if action in ("pause", "unpause"):
        ledger.record_pause(b, action == "pause", operator)
        return "dispatching paused" if action == "pause" else "dispatching resumed"
    raise ValidationError(f"unknown action {action!r}; expected one of {', '.join(ACTIONS)}")
