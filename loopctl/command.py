"""Deliver an operator command: to the running controller over its operator socket (an
IPC socket only its user can reach), or, when no controller holds the campaign,
straight into the database. Either way the same events."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import zmq

from loopctl import protocol
from loopctl.errors import LoopctlError
from loopctl.integrity import stored_spec
from loopctl.operator_commands import apply_command
from loopctl.space import Space
from loopctl.store import Store, is_locked

TIMEOUT_MS = 10_000


def send_command(db: str, body: dict[str, Any]) -> str:
    if not Path(db).exists():
        raise LoopctlError(f"{db}: no such campaign database")
    if not is_locked(db):
        with Store.open(db) as store:
            spec = stored_spec(store)
            with store.batch() as b:
                return (
                    apply_command(b, spec, Space.for_spec(spec), body) + " (controller not running)"
                )
    with Store.open(db, readonly=True) as store:
        endpoint = (store.meta("controller") or {}).get("operator")
    if not endpoint:
        raise LoopctlError(
            f"{db}: is in use by a controller that takes no operator commands (started by an "
            "older loopctl): stop it and resume it"
        )
    path = endpoint.removeprefix("ipc://")
    if not os.path.exists(path):
        raise LoopctlError(
            f"{db}: its controller's operator socket {path} is not there: run this on the "
            "machine the controller runs on, as its user"
        )
    if not os.access(path, os.W_OK):
        raise LoopctlError(f"{db}: its controller's operator socket {path} is not yours to use")
    return _over_socket(endpoint, body)


def heartbeats(
    controller: Mapping[str, Any], timeout_ms: int = 1_000
) -> list[dict[str, Any]] | None:
    """The drivers connected to the running controller that ``controller`` (the campaign's
    `controller` record) describes, each with the seconds since it was last heard from;
    None when no controller answers (none runs, or it is busy).

    Heartbeats live only in the controller's memory (writing each one would cost a commit
    per beat), so this asks it; it never takes the campaign's lock.
    """
    endpoint = controller.get("operator")
    if not controller.get("running") or not endpoint:
        return None
    if not os.access(endpoint.removeprefix("ipc://"), os.W_OK):
        return None
    try:
        reply = _ask(endpoint, {"action": "heartbeats", "operator": "-"}, timeout_ms)
    except LoopctlError:
        return None
    drivers = reply.get("drivers")
    return drivers if isinstance(drivers, list) else None


def _over_socket(endpoint: str, body: dict[str, Any]) -> str:
    reply = _ask(endpoint, body, TIMEOUT_MS)
    if reply.get("type") == "ERROR":
        raise LoopctlError(f"refused by the controller: {reply.get('message')}")
    return str(reply.get("message"))


def _ask(endpoint: str, body: dict[str, Any], timeout_ms: int) -> dict[str, Any]:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        sock.connect(endpoint)
        msg = protocol.make("COMMAND", **body)
        sock.send(protocol.encode(msg))
        if not sock.poll(timeout_ms):
            raise LoopctlError(
                f"the controller at {endpoint} did not answer within {timeout_ms / 1000:g} s"
            )
        reply: dict[str, Any] = json.loads(sock.recv())
    finally:
        sock.close()
        ctx.term()
    return reply
