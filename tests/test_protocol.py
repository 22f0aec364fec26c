"""The wire format: strict envelope, every field checked."""

from __future__ import annotations

import json

import pytest

from loopctl import protocol
from loopctl.errors import ProtocolError


def frame(**fields: object) -> bytes:
    return json.dumps({"v": 1, "id": "abc", **fields}).encode()


def test_round_trip() -> None:
    msg = protocol.make(
        "RESULT",
        trial="T0001",
        outcomes={"y": 1.5},
        metadata={"a": 1},
        campaign_id="ab" * 16,
        spec_hash="cd" * 32,
    )
    back = protocol.decode(protocol.encode(msg))
    assert back == msg


@pytest.mark.parametrize(
    "data,code",
    [
        (b"nope", "bad_json"),
        (b"\xff", "bad_json"),
        (b"[]", "bad_envelope"),
        (json.dumps({"v": 2, "id": "a", "type": "READY"}).encode(), "bad_version"),
        (json.dumps({"v": 1, "type": "READY"}).encode(), "bad_envelope"),
        (
            frame(
                type="WELCOME", campaign="x", heartbeat_interval=1, heartbeat_timeout=2, settings={}
            ),
            "unknown_type",
        ),  # controller-only message sent by a driver
        (frame(type="RESULT", trial="T1"), "bad_field"),
        (frame(type="RESULT", trial="T1", outcomes=[1]), "bad_field"),
        (frame(type="HELLO", name="d", kind="k", version="1", capacity=0), "bad_field"),
        (frame(type="HELLO", name="d", kind="k", version="1", capacity=True), "bad_field"),
        (frame(type="READY", extra=1), "bad_field"),
        (b"x" * (protocol.MAX_FRAME + 1), "too_large"),
        # a type that is not a string used to raise TypeError (unhashable) past the guard
        (b'{"v":1,"id":"a","type":[]}', "unknown_type"),
        (b'{"v":1,"id":"a","type":{"x":1}}', "unknown_type"),
        # deep nesting used to raise RecursionError from the JSON parser
        (b"[" * 100000 + b"]" * 100000, "bad_json"),
        (b'{"v":1,"id":"a","type":"READY","x":' + b"[" * 40 + b"]" * 40 + b"}", "bad_json"),
        # True == 1 in Python, but it is not protocol version 1
        (b'{"v":true,"id":"a","type":"READY"}', "bad_version"),
        (b'{"v":1.0,"id":"a","type":"READY"}', "bad_version"),
        # a report without its campaign cannot be told from another campaign's
        (frame(type="RESULT", trial="T1", outcomes={"y": 1}), "bad_field"),
    ],
)
def test_rejections(data: bytes, code: str) -> None:
    with pytest.raises(ProtocolError) as err:
        protocol.decode(data)
    assert err.value.code == code


def test_message_id_of_bad_frame() -> None:
    assert protocol.message_id(frame(type="RESULT")) == "abc"
    assert protocol.message_id(b"garbage") is None
    assert protocol.message_id(b"[" * 100000 + b"]" * 100000) is None
