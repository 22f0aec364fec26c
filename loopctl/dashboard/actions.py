"""Operator actions from the page: checked here, then delivered exactly as `loopctl approve`
(and the others) deliver them, by :func:`loopctl.command.send_command`: over a running
controller's operator socket, or into the database when no controller holds it. The
dashboard itself never writes the database.

Who may act: whoever holds the token the dashboard printed when it started (anyone who can
reach the port can read the page; acting needs the token). Bound beyond loopback, the page
is read-only unless the dashboard was started with ``--allow-remote-actions``: the token
then travels over plain HTTP, which anyone on the path can read.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from typing import Any

from loopctl.command import send_command

# the CLI's operator commands the page offers ("amend" stays a CLI command: it rewrites a
# recorded result, which deserves the care of typing it)
PAGE_ACTIONS = ("approve", "reject", "suggest", "pause", "unpause")
TOKEN_HEADER = "x-loopctl-token"


class Refused(Exception):
    """An action not delivered; ``status`` is the HTTP status the page gets."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Gate:
    """Whether, and with which token, this dashboard accepts actions."""

    token: str
    actions: bool  # False: read-only
    why_read_only: str = ""

    @classmethod
    def new(cls, actions: bool, why_read_only: str = "") -> Gate:
        return cls(secrets.token_urlsafe(24), actions, why_read_only)

    def check(self, given: str | None) -> None:
        if not self.actions:
            raise Refused(403, f"this dashboard is read-only: {self.why_read_only}")
        if not given:
            raise Refused(
                403,
                "no token: actions need the token the dashboard printed when it started "
                "(open the URL it printed, or paste the token into the page)",
            )
        if not hmac.compare_digest(given.encode(), self.token.encode()):
            raise Refused(403, "wrong token: nothing was done (use the one the dashboard printed)")


def command_body(form: Any) -> dict[str, Any]:
    """The operator command a page's request asks for, in the CLI's form; malformed
    requests are refused before anything is sent."""
    if not isinstance(form, dict):
        raise Refused(400, "expected a JSON object")
    action = form.get("action")
    if action not in PAGE_ACTIONS:
        raise Refused(400, f"unknown action {action!r}; expected one of {', '.join(PAGE_ACTIONS)}")
    operator = form.get("operator")
    if not isinstance(operator, str) or not operator.strip() or len(operator) > 100:
        raise Refused(400, "give the operator's name (it is recorded with the action)")
    body: dict[str, Any] = {"action": action, "operator": operator.strip()}
    trials = form.get("trials")
    if trials is not None:
        if not isinstance(trials, list) or not all(isinstance(t, str) for t in trials):
            raise Refused(400, "trials: expected a list of trial ids")
        body["trials"] = trials
    reason = form.get("reason")
    if reason:
        if not isinstance(reason, str):
            raise Refused(400, "reason: expected text")
        body["reason"] = reason
    params = form.get("parameters")
    if params is not None:
        if not isinstance(params, dict):
            raise Refused(400, "parameters: expected an object of NAME: VALUE")
        body["parameters"] = params
    return body


def deliver(db: str, body: dict[str, Any]) -> str:
    """What the CLI prints for the same command; a refusal (a validation error, a trial in
    the wrong state, no controller answering) raises :class:`loopctl.errors.LoopctlError`
    with the CLI's message."""
    return send_command(db, body)
