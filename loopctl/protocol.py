"""Wire messages between the controller and drivers: the one module that knows the format.

A message is one ZeroMQ frame of UTF-8 JSON: ``{"v": 1, "id": ..., "type": ...,
<fields>}``. The envelope is strict: unknown types, unknown fields and
wrongly typed fields are rejected with a :class:`ProtocolError` whose code goes
into the ``ERROR`` reply. Values (outcomes, parameters) are checked against the
campaign elsewhere; this module checks shape only.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from loopctl.errors import ProtocolError

VERSION = 1
MAX_FRAME = 1 << 20  # 1 MiB: a result is small; anything bigger is a mistake or an attack
MAX_DEPTH = 32  # nesting of arrays/objects: a real message needs 4; deeper ones are refused
# a driver that hears nothing reconnects after a back-off from BACKOFF_MIN doubling up to
# BACKOFF_MAX seconds (each with up to JITTER more): what the controller waits for at the
# end of a campaign is bounded by these (see Controller._linger)
BACKOFF_MIN, BACKOFF_MAX, JITTER = 0.25, 8.0, 0.2
# seconds a driver goes on knocking without hearing from any controller before it exits
# (status 4), its unacknowledged reports kept in its outbox for its next run
GIVE_UP_AFTER = 600.0

Check = Callable[[Any], bool]


def _str(v: Any) -> bool:
    return isinstance(v, str) and 0 < len(v) <= 256


def _text(v: Any) -> bool:
    return isinstance(v, str) and len(v) <= 4096


def _int_pos(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 < v <= 10_000


def _seq(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 < v < 1 << 62


def _num_or_none(v: Any) -> bool:
    return v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))


def _pos_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0


def _nonneg(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0


def _bool(v: Any) -> bool:
    return isinstance(v, bool)


def _map(v: Any) -> bool:
    return isinstance(v, dict)


def _ids(v: Any) -> bool:
    return isinstance(v, list) and len(v) <= 10_000 and all(_str(x) for x in v)


def _maps(v: Any) -> bool:
    return isinstance(v, list) and len(v) <= 10_000 and all(_map(x) for x in v)


def _names(v: Any) -> bool:
    return isinstance(v, list) and 0 < len(v) <= 64 and all(_str(x) for x in v)


def _hex(v: Any) -> bool:
    return isinstance(v, str) and 0 < len(v) <= 64 and all(c in "0123456789abcdef" for c in v)


# Every TASK, RESULT and FAILED names its campaign (the id made with its database) and the
# hash of its spec, so a result can never be recorded in a campaign it was not measured for.
_CAMPAIGN: dict[str, tuple[Check, bool]] = {"campaign_id": (_hex, True), "spec_hash": (_hex, True)}


# type -> {field: (check, required)}
SCHEMAS: dict[str, dict[str, tuple[Check, bool]]] = {
    # driver -> controller
    "HELLO": {
        "name": (_str, True),
        "kind": (_str, True),
        "version": (_str, True),
        "capacity": (_int_pos, True),
        "holds": (_ids, False),  # "CAMPAIGN_ID/TRIAL" for each trial held, any campaign
        "session": (_str, False),
        "connection": (_int_pos, False),  # counts the sockets of one session: 1, 2, 3...
        "fidelities": (_names, False),  # the campaign's levels it serves (absent: all)
    },
    "READY": {},
    "RESULT": {
        "trial": (_str, True),
        "outcomes": (_map, True),
        "metadata": (_map, False),
        "cost": (_nonneg, False),  # what the trial cost, measured (campaigns with fidelities)
        **_CAMPAIGN,
    },
    "FAILED": {
        "trial": (_str, True),
        "reason": (_text, True),
        "retryable": (_bool, True),
        **_CAMPAIGN,
    },
    "RELEASE": {  # put back unmeasured (a person: "later"): not a failure, not an attempt
        "trial": (_str, True),
        "reason": (_text, True),
        "leaving": (_bool, False),  # the driver goes next: send it nothing more
        **_CAMPAIGN,
    },
    "HEARTBEAT": {},
    "BYE": {"reason": (_text, False)},
    # operator -> controller (loopctl approve/reject/suggest/pause/unpause), no HELLO needed
    "COMMAND": {
        "action": (_str, True),
        "operator": (_str, True),
        "trials": (_ids, False),
        "reason": (_text, False),
        "parameters": (_map, False),
        "outcomes": (_map, False),  # amend: the corrected values
    },
    # controller -> driver
    "WELCOME": {
        "campaign": (_str, True),
        "heartbeat_interval": (_pos_num, True),
        "heartbeat_timeout": (_pos_num, True),
        "settings": (_map, True),
        **_CAMPAIGN,
    },
    "TASK": {
        "trial": (_str, True),
        "parameters": (_map, True),
        "attempt": (_int_pos, True),
        "deadline": (_num_or_none, False),
        "fidelity": (_str, False),  # campaigns with fidelities: the level to measure it at
        **_CAMPAIGN,
    },
    "CANCEL": {"trial": (_str, True), "reason": (_text, False)},
    "ACK": {
        "trial": (_str, True),
        "ref": (_str, False),
        "campaign_id": (_hex, False),
        # the receipt: the event that recorded the report, checked later by `audit --receipts`
        "seq": (_seq, False),
        "hash": (_hex, False),
        "event": (_str, False),
    },
    "ERROR": {
        "code": (_str, True),
        "message": (_text, True),
        "ref": (_str, False),
        "trial": (_str, False),
    },
    "SHUTDOWN": {"reason": (_text, False)},
    # a COMMAND was carried out; `heartbeats` is answered with the connected drivers
    "DONE": {"message": (_text, True), "ref": (_str, False), "drivers": (_maps, False)},
}
FROM_DRIVER = frozenset(
    {"HELLO", "READY", "RESULT", "FAILED", "RELEASE", "HEARTBEAT", "BYE", "COMMAND"}
)
FROM_CONTROLLER = frozenset(
    {"WELCOME", "TASK", "CANCEL", "ACK", "ERROR", "SHUTDOWN", "HEARTBEAT", "DONE"}
)


@dataclass(frozen=True)
class Message:
    type: str
    body: dict[str, Any] = field(default_factory=dict)
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:16])

    def get(self, key: str, default: Any = None) -> Any:
        return self.body.get(key, default)


def make(type_: str, **body: Any) -> Message:
    """Build a message, checked like any received one (catches our own bugs early)."""
    msg = Message(type_, {k: v for k, v in body.items() if v is not None})
    _validate(msg.type, msg.body)
    return msg


def encode(msg: Message) -> bytes:
    envelope = {"v": VERSION, "id": msg.id, "type": msg.type, **msg.body}
    return json.dumps(envelope, separators=(",", ":")).encode()


def decode(frame: bytes, allowed: frozenset[str] = FROM_DRIVER) -> Message:
    """Parse and validate one frame; raise ProtocolError(code, message) on anything wrong.

    Only ProtocolError leaves this function: whatever a peer sends (deep nesting that
    would exhaust the parser's stack, a list where a name belongs) is a refusal the
    sender is told about, never an exception that could stop the receiving loop.
    """
    if not isinstance(frame, bytes):
        raise ProtocolError("bad_envelope", "a message must be one frame of bytes")
    if len(frame) > MAX_FRAME:
        raise ProtocolError("too_large", f"message of {len(frame)} bytes exceeds {MAX_FRAME}")
    data = _parse(frame)
    if not isinstance(data, dict):
        raise ProtocolError("bad_envelope", "a message must be a JSON object")
    v = data.get("v")
    if type(v) is not int or v != VERSION:  # True == 1 in Python; it is not a version
        raise ProtocolError(
            "bad_version",
            f"protocol version {_short(v)} is not supported; "
            f"this controller speaks version {VERSION}",
        )
    mid, mtype = data.get("id"), data.get("type")
    if not _str(mid):
        raise ProtocolError("bad_envelope", "field 'id' must be a non-empty string")
    if not isinstance(mtype, str) or mtype not in allowed:
        raise ProtocolError(
            "unknown_type",
            f"unknown message type {_short(mtype)}; expected one of {', '.join(sorted(allowed))}",
        )
    body = {k: v for k, v in data.items() if k not in ("v", "id", "type")}
    _validate(mtype, body)
    return Message(mtype, body, str(mid))


def _validate(mtype: str, body: Mapping[str, Any]) -> None:
    schema = SCHEMAS.get(mtype)
    if schema is None:
        raise ProtocolError("unknown_type", f"unknown message type {mtype!r}")
    for key in body:
        if key not in schema:
            raise ProtocolError("bad_field", f"{mtype}: unknown field {key!r}")
    for key, (check, required) in schema.items():
        if key not in body:
            if required:
                raise ProtocolError("bad_field", f"{mtype}: missing field {key!r}")
            continue
        if not check(body[key]):
            raise ProtocolError(
                "bad_field", f"{mtype}: field {key!r} has an invalid value {_short(body[key])}"
            )


def _short(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def _parse(frame: bytes) -> Any:
    try:
        data = json.loads(frame.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ProtocolError("bad_json", f"not a UTF-8 JSON message: {_short(str(exc))}") from None
    except RecursionError:
        raise ProtocolError("bad_json", f"nested more than {MAX_DEPTH} levels deep") from None
    if _depth(data) > MAX_DEPTH:
        raise ProtocolError("bad_json", f"nested more than {MAX_DEPTH} levels deep")
    return data


def _depth(data: Any) -> int:
    """Nesting depth, without recursion (the parser already accepted the value)."""
    deepest, stack = 0, [(data, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict):
            v = list(v.values())
        if isinstance(v, list):
            deepest = max(deepest, d)
            if d <= MAX_DEPTH:
                stack.extend((x, d + 1) for x in v)
    return deepest


def message_id(frame: bytes) -> str | None:
    """Best-effort id of a frame that failed to decode, so an ERROR can refer to it."""
    try:
        data = _parse(frame)
    except ProtocolError:
        return None
    mid = data.get("id") if isinstance(data, dict) else None
    return mid if _str(mid) else None
