"""Deliver an operator command: to the running controller over its socket, or, when no
controller holds the campaign, straight into the database. Either way the same events."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import zmq

from loopctl import protocol
from loopctl.errors import LoopctlError
from loopctl.integrity import stored_spec
from loopctl.operator import apply_command
from loopctl.security import secure_client
from loopctl.space import Space
from loopctl.store import Store, is_locked

TIMEOUT_MS = 10_000


def send_command(db: str, body: dict[str, Any], curve: tuple[str, str] | None = None) -> str:
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
        endpoint = (store.meta("controller") or {}).get("endpoint")
    if not endpoint:
        raise LoopctlError(f"{db}: is in use but its controller has no socket to talk to")
    return _over_socket(endpoint, body, curve)


def _over_socket(endpoint: str, body: dict[str, Any], curve: tuple[str, str] | None) -> str:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        if curve is not None:
            secure_client(sock, *curve)
        sock.connect(endpoint)
        msg = protocol.make("COMMAND", **body)
        sock.send(protocol.encode(msg))
        if not sock.poll(TIMEOUT_MS):
            raise LoopctlError(
                f"the controller at {endpoint} did not answer within "
                f"{TIMEOUT_MS // 1000} s (with CURVE on, give --key and "
                "--server-key)"
            )
        reply = json.loads(sock.recv())
    finally:
        sock.close()
        ctx.term()
    if reply.get("type") == "ERROR":
        raise LoopctlError(f"refused by the controller: {reply.get('message')}")
    return str(reply.get("message"))
