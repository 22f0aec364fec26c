"""Thousands of random and mutated messages: the handler never raises, every bad message is
answered with ERROR, and nothing is recorded for it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loopctl import ledger, protocol
from loopctl.controller import Controller, PendingReplies
from loopctl.errors import ProtocolError
from loopctl.space import Space
from loopctl.spec import parse_spec
from loopctl.store import Store
from loopctl.strategies import make_strategy

SPEC = parse_spec(
    {
        "name": "fuzz",
        "space": [
            {"name": "x1", "type": "range", "bounds": [-5, 10]},
            {"name": "x2", "type": "range", "bounds": [0, 15]},
        ],
        "objectives": [{"name": "y", "goal": "minimize"}],
        "budget": {"trials": 5},
        "strategy": "sobol",
    }
)
GOOD_ID = b"\x00driver"


def setup(tmp: Path) -> tuple[Controller, Store, str]:
    store = Store.create(tmp / "f.db", SPEC.raw, SPEC.hash, {}, synchronous="NORMAL")
    ctl = Controller(store, SPEC, make_strategy(SPEC))
    with store.batch() as b:
        ctl.handle(
            b,
            [
                GOOD_ID,
                protocol.encode(
                    protocol.make("HELLO", name="d", kind="k", version="1", capacity=2)
                ),
            ],
            PendingReplies(),
        )
        ctl.handle(b, [GOOD_ID, protocol.encode(protocol.make("READY"))], PendingReplies())
        data = ledger.snapshot(store, SPEC, Space(SPEC.space))
        ledger.record_proposal(b, make_strategy(SPEC).propose(data, 2), data.as_of)
        ctl._dispatch(b, PendingReplies())
    tid = store.trials("running")[0]["id"]
    return ctl, store, tid


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
TYPES = [*sorted(protocol.SCHEMAS), "", "result", "NOPE"]
FIELDS = [
    "trial",
    "outcomes",
    "metadata",
    "reason",
    "retryable",
    "name",
    "kind",
    "version",
    "capacity",
    "holds",
    "campaign_id",
    "spec_hash",
    "x",
]


@st.composite
def messages(draw: Any, trial: str, campaign: dict[str, str]) -> bytes:
    kind = draw(st.sampled_from(["random_bytes", "random_json", "mutated"]))
    if kind == "random_bytes":
        return bytes(draw(st.binary(max_size=64)))
    if kind == "random_json":
        return json.dumps(draw(json_values)).encode()
    msg: dict[str, Any] = {
        "v": draw(st.sampled_from([1, 1, 1, 2, "1", None])),
        "id": draw(st.sampled_from(["a", "", 5, None, "x" * 300])),
        "type": draw(st.sampled_from(TYPES)),
    }
    for key in draw(st.lists(st.sampled_from(FIELDS), max_size=4, unique=True)):
        if key == "trial":
            msg[key] = draw(st.sampled_from([trial, "T9999", None]))
        elif key in campaign:
            msg[key] = draw(st.sampled_from([campaign[key], "0" * 32, "", None]))
        else:
            msg[key] = draw(json_values)
    if draw(st.booleans()):  # a report of this campaign, so the checks past the envelope run
        msg.update(campaign)
    if draw(st.booleans()):
        msg["outcomes"] = draw(
            st.sampled_from(
                [
                    {"y": float("nan")},
                    {"z": 1.0},
                    {},
                    {"y": "1"},
                    {"y": [1.0, -1.0]},
                    {"y": {"value": 1.0}},
                ]
            )
        )
    return json.dumps(msg).encode()


def fingerprint(store: Store) -> tuple[Any, ...]:
    return (
        store.conn.execute("SELECT COUNT(*), MAX(seq) FROM events").fetchone(),
        store.conn.execute("SELECT id, status FROM trials ORDER BY id").fetchall(),
    )


def test_random_and_mutated_messages(tmp_path: Path) -> None:
    ctl, store, tid = setup(tmp_path)
    campaign = {"campaign_id": ctl.campaign_id, "spec_hash": ctl.spec_hash}

    @settings(
        max_examples=3000,
        deadline=None,  # the machine's speed is not what this checks
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(frame=messages(tid, campaign), identity=st.sampled_from([GOOD_ID, b"\x00stranger"]))
    def check(frame: bytes, identity: bytes) -> None:
        before = fingerprint(store)
        out = PendingReplies()
        with store.batch() as b:
            ctl.handle(b, [identity, frame], out)  # must not raise
        replies = [m for _, m in out.messages]
        errors = [m for m in replies if m.type == "ERROR"]
        try:
            protocol.decode(frame)
        except ProtocolError:
            malformed = True
        else:
            malformed = False
        if malformed or errors:  # refused: exactly one ERROR, nothing recorded
            assert [m.type for m in replies] == ["ERROR"], (frame, replies)
            assert errors[0].body["code"] and errors[0].body["message"]
            assert fingerprint(store) == before, frame
        else:  # a well-formed message that was accepted
            assert [m.type for m in replies] in ([], ["ACK"], ["WELCOME"], ["HEARTBEAT"]), replies
            reopen(store, tid)

    check()
    with Store.open(tmp_path / "f.db", readonly=True) as s:
        assert s.verify_chain()[0]


def reopen(store: Store, tid: str) -> None:
    """A valid RESULT/FAILED settled the trial: put a fresh one in flight for what follows."""
    t = store.trial(tid)
    assert t is not None
    if t["status"] == "proposed":
        with store.batch() as b:
            ledger.record_dispatch(b, tid, "d", None)
