"""Operator commands on a campaign: approve, reject, suggest, pause, unpause, amend.

The same function records them whether the controller runs (it receives a
COMMAND on its operator socket and applies it in its own transaction) or not (the
CLI opens the database itself), so both paths leave the same events.

Who may command: whoever may write the database. A running controller takes
commands only on its operator socket, an IPC socket in a directory only its own
user can enter (mode 0700), never on the socket drivers use: a driver's key
proves it may report results, not that it may steer the campaign.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from loopctl import ledger, protocol
from loopctl.errors import ProtocolError, StoreError, TrialError, ValidationError
from loopctl.space import Space
from loopctl.spec import Spec
from loopctl.store import Batch

log = logging.getLogger("loopctl.controller")

ACTIONS = ("approve", "reject", "suggest", "pause", "unpause", "amend")


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
    if action == "amend":
        if len(trials) != 1:
            raise ValidationError("amend: name exactly one trial")
        return ledger.record_amendment(
            b, spec, trials[0], body.get("outcomes") or {}, body.get("reason") or "", operator
        )
    if action in ("pause", "unpause"):
        ledger.record_pause(b, action == "pause", operator)
        return "dispatching paused" if action == "pause" else "dispatching resumed"
    raise ValidationError(f"unknown action {action!r}; expected one of {', '.join(ACTIONS)}")


def answer(b: Batch, spec: Spec, space: Space, frame: bytes) -> protocol.Message:
    """The reply to one frame on the operator socket, DONE or ERROR; raises only
    StoreError (then nothing was recorded and the caller says so)."""
    ref = protocol.message_id(frame)
    try:
        msg = protocol.decode(frame)
        if msg.type != "COMMAND":
            raise ProtocolError("bad_type", f"the operator socket takes COMMAND, not {msg.type}")
        with b.savepoint():
            done = apply_command(b, spec, space, msg.body)
    except (ProtocolError, TrialError) as exc:
        return protocol.make("ERROR", code=exc.code, message=str(exc), ref=ref)
    except ValidationError as exc:
        return protocol.make("ERROR", code="invalid_value", message=str(exc), ref=ref)
    except StoreError:
        raise
    except Exception as exc:  # a bug must not take the campaign down, nor go unanswered
        log.exception("internal error with an operator command")
        return protocol.make("ERROR", code="internal", message=str(exc)[:500], ref=ref)
    log.info("operator %s: %s", msg.body["operator"], done)
    return protocol.make("DONE", message=done, ref=msg.id)
