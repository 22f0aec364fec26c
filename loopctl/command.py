"""Deliver an operator command: to the running controller over its operator socket (an
IPC socket only its user can reach), or, when no controller holds the campaign,
straight into the database. Either way the same events."""

from __future__ import annotations

import json
import os
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


def _over_socket(endpoint: str, body: dict[str, Any]) -> str:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        sock.connect(endpoint)
        msg = protocol.make("COMMAND", **body)
        sock.send(protocol.encode(msg))
        if not sock.poll(TIMEOUT_MS):
            raise LoopctlError(
                f"the controller at {endpoint} did not answer within {TIMEOUT_MS // 1000} s"
            )
        reply = json.loads(sock.recv())
    finally:
        sock.close()
        ctx.term()
    if reply.get("type") == "ERROR":
        raise LoopctlError(f"refused by the controller: {reply.get('message')}")
    return str(reply.get("message"))
