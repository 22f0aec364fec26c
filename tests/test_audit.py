"""`loopctl audit`: any edit of the database made behind loopctl's back is caught and located."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from loopctl import Campaign
from loopctl.canonical import canonical
from loopctl.store import GENESIS, event_hash
from tests.conftest import loopctl
from tests.specs import branin


@pytest.fixture(params=["new", "checked"])
def db(tmp_path: Path, request: pytest.FixtureRequest) -> Path:
    """A small campaign; ``checked``: read once already, so that the edits every test
    makes come after a verified checkpoint (loopctl.verified), and must be caught alike."""
    path = tmp_path / "a.db"
    with Campaign.create(branin(tmp_path, strategy={"method": "sobol"}), path) as c:
        for t in c.ask(4):
            c.tell(t.id, {"y": t.parameters["x1"] ** 2})
        (t,) = c.ask()
        c.fail(t.id, "film did not form")
    if request.param == "checked":
        loopctl("status", str(path))
        said = loopctl("audit", str(path)).stdout
        assert "tables: unchanged since checked in full" in said, said[:500]
    return path


def trial_event(db: Path, kind: str, trial: str) -> int:
    conn = sqlite3.connect(db)
    (seq,) = conn.execute(
        "SELECT seq FROM events WHERE kind = ? AND trial_id = ?", (f"trial_{kind}", trial)
    ).fetchone()
    conn.close()
    return int(seq)


def tamper(db: Path, sql: str) -> None:
    conn = sqlite3.connect(db)
    conn.execute(sql)
    conn.commit()
    conn.close()


def test_untouched_campaign_verifies(db: Path) -> None:
    r = loopctl("audit", str(db))
    assert r.stdout.startswith(f"audit of {db}: OK")
    assert "T0005 failed: chosen by sobol" in r.stdout
    assert "failed: film did not form -> failed" in r.stdout
    report = json.loads(loopctl("audit", str(db), "--json").stdout)
    assert report["ok"] and report["first_bad_event"] is None
    assert report["trials"][0]["proposal"]["strategy"] == "sobol"


@pytest.mark.parametrize(
    "sql,first_bad",
    [
        ("UPDATE observations SET value = value + 1 WHERE trial_id = 'T0002'", "completed:T0002"),
        (
            "UPDATE trials SET parameters = json_set(parameters, '$.x1', 0.5) WHERE id = 'T0003'",
            "proposed:T0003",  # what set them, not the trial's last event (its result)
        ),
        ("UPDATE trials SET status = 'completed' WHERE id = 'T0005'", "last:T0005"),
        ("DELETE FROM observations WHERE trial_id = 'T0001'", "completed:T0001"),
        ("DELETE FROM events WHERE seq = 7", "7"),
        (
            "UPDATE events SET payload = replace(payload, '\"value\":', '\"value\":1') "
            "WHERE trial_id = 'T0004' AND kind = 'trial_completed'",
            "completed:T0004",
        ),
        ("UPDATE events SET kind = 'trial_failed' WHERE seq = 9", "9"),
    ],
)
def test_any_edit_fails_and_names_the_first_bad_event(db: Path, sql: str, first_bad: str) -> None:
    if first_bad.startswith(("completed:", "proposed:")):
        expected = trial_event(db, *first_bad.split(":"))
    elif first_bad.startswith("last:"):
        conn = sqlite3.connect(db)
        expected = conn.execute(
            "SELECT MAX(seq) FROM events WHERE trial_id = ?", (first_bad.split(":")[1],)
        ).fetchone()[0]
        conn.close()
    else:
        expected = int(first_bad)
    tamper(db, sql)
    r = loopctl("audit", str(db), "--json", check=False)
    assert r.returncode == 2
    report = json.loads(r.stdout)
    assert not report["ok"] and report["first_bad_event"] == expected, report["problems"]
    text = loopctl("audit", str(db), check=False).stdout
    assert "FAILED" in text and f"first bad: event {expected}" in text


@pytest.mark.slow
def test_replay_recomputes_every_proposal(tmp_path: Path) -> None:
    from dataclasses import replace

    from loopctl.campaign import stored_spec
    from loopctl.replay import replay
    from loopctl.store import Store
    from tests.specs import branin_fn

    path = tmp_path / "r.db"
    with Campaign.create(branin(tmp_path, seed=11), path) as c:
        for _ in range(5):  # batches of two: pending points are part of what is replayed
            trials = c.ask(2)
            for t in trials:
                c.tell(t.id, {"y": branin_fn(t.parameters["x1"], t.parameters["x2"])})
    r = loopctl("audit", str(path), "--replay")
    assert "DIFFERENT" not in r.stdout and r.stdout.count(": same (") == 5
    report = json.loads(loopctl("audit", str(path), "--replay", "--json").stdout)
    assert {x["strategy"] for x in report["replay"]} == {"sobol", "botorch"}
    with Store.open(path, readonly=True) as store:
        spec = stored_spec(store)
        other = replay(store, replace(spec, seed=spec.seed + 1))  # a different seed
    assert [x["ok"] for x in other] == [False] * 5


def test_a_head_kept_elsewhere_catches_a_rewritten_history(db: Path, tmp_path: Path) -> None:
    """The chain alone cannot tell a consistent forgery (here, the whole campaign made again
    with other results) from the real thing; the head an earlier audit printed can."""
    head = json.loads(loopctl("audit", str(db), "--json").stdout)["head"]
    assert head["seq"] > 0 and len(head["hash"]) == 64
    assert f"head: event {head['seq']}, hash {head['hash']}" in loopctl("audit", str(db)).stdout
    with Campaign.open(db) as c:  # the real log grows: the old head is still in it
        (t,) = c.ask()
        c.tell(t.id, {"y": 1.0})
    assert loopctl("audit", str(db), "--expect-head", head["hash"]).returncode == 0
    forged = tmp_path / "forged" / "a.db"
    forged.parent.mkdir()
    with Campaign.create(branin(forged.parent, strategy={"method": "sobol"}), forged) as c:
        for t in c.ask(4):
            c.tell(t.id, {"y": -1.0})  # better results than were measured
    assert loopctl("audit", str(forged)).returncode == 0  # consistent in itself
    r = loopctl("audit", str(forged), "--expect-head", head["hash"], check=False)
    assert r.returncode == 2 and "rewritten or cut" in r.stdout, r.stdout


def edit_event(db: Path, seq: int, change: Callable[[dict[str, Any]], None], rehash: bool) -> None:
    """Change one event's payload in place, as someone with the file and a SQLite shell
    would; ``rehash``: also give it the hash its new content has (but leave the next
    event's hash, which was computed from the old one)."""
    conn = sqlite3.connect(db)
    (text,) = conn.execute("SELECT payload FROM events WHERE seq = ?", (seq,)).fetchone()
    payload = json.loads(text)
    change(payload)
    new = canonical(payload)
    assert new != text
    conn.execute("UPDATE events SET payload = ? WHERE seq = ?", (new, seq))
    if rehash:
        row = conn.execute("SELECT hash FROM events WHERE seq = ?", (seq - 1,)).fetchone()
        t, kind, trial = conn.execute(
            "SELECT time, kind, trial_id FROM events WHERE seq = ?", (seq,)
        ).fetchone()
        h = event_hash(row[0] if row else GENESIS, seq, t, kind, trial, new)
        conn.execute("UPDATE events SET hash = ? WHERE seq = ?", (h, seq))
    conn.commit()
    conn.close()


def _set(*path_and_value: Any) -> Callable[[dict[str, Any]], None]:
    *path, value = path_and_value

    def change(payload: dict[str, Any]) -> None:
        node: Any = payload
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return change


EDITS = {  # which event (kind and which one of that kind), and what is changed in it
    "a result": ("trial_completed", 1, _set("outcomes", "y", "value", 0.0)),
    "a proposal": ("proposal_made", 0, _set("seed", 12345)),
    "a trial's parameters": ("trial_proposed", 2, _set("parameters", "x1", 0.5)),
    "the first event": ("campaign_created", 0, _set("spec", "budget", "trials", 999)),
    "the last event": ("trial_failed", -1, _set("reason", "nothing wrong")),
}


@pytest.mark.parametrize("rehash", [False, True], ids=["hash-kept", "hash-recomputed"])
@pytest.mark.parametrize("what", list(EDITS))
def test_an_edited_event_is_named_itself_not_the_one_after(
    db: Path, what: str, rehash: bool
) -> None:
    """An edit whose hash was recomputed breaks the chain only at the next event, whose
    hash was computed from the old one; audit named that next event. The tables, written
    in the same transaction as the original event, still say what it said."""
    kind, which, change = EDITS[what]
    conn = sqlite3.connect(db)
    seqs = [
        s for (s,) in conn.execute("SELECT seq FROM events WHERE kind = ? ORDER BY seq", (kind,))
    ]
    last = conn.execute("SELECT MAX(seq) FROM events").fetchone()[0]
    conn.close()
    seq = seqs[which]
    assert what != "the first event" or seq == 1
    assert what != "the last event" or seq == last
    edit_event(db, seq, change, rehash)
    r = loopctl("audit", str(db), "--json", check=False)
    assert r.returncode == 2, r.stdout[-2000:]
    report = json.loads(r.stdout)
    assert report["first_bad_event"] == seq, report["problems"]
    text = loopctl("audit", str(db), check=False).stdout
    assert f"first bad: event {seq})" in text.splitlines()[4], text[:2000]
    r = loopctl("status", str(db), check=False)  # the readers name the same event
    assert r.returncode == 1 and f"(first bad: event {seq})" in r.stderr, r.stderr


def test_rows_keyed_as_sqlite_allows_are_compared_in_its_order(db: Path) -> None:
    """The tables are compared as two sorted streams: a key of another type (an integer
    where ids are text) must be named, not crash the merge."""
    tamper(db, "UPDATE trials SET id = 42 WHERE id = 'T0002'")
    report = json.loads(loopctl("audit", str(db), "--json", check=False).stdout)
    messages = [p["message"] for p in report["problems"]]
    assert not report["ok"]
    assert "trials row T0002 is missing (the events create it)" in messages, messages
    assert "trials row 42 exists but no event creates it" in messages, messages
