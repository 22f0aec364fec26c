"""Verified checkpoints (loopctl.verified): a reading command skips the fold only while the
log and the tables are, to the byte, what a full check proved consistent; every edit made
after a checkpoint is caught as it was before there were checkpoints, with the same words."""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from loopctl import Campaign, verified
from loopctl.canonical import canonical
from loopctl.errors import TamperedError
from loopctl.integrity import Verdict, check, log_digest, tables_digest, verified_spec
from loopctl.store import GENESIS, Store, event_hash
from tests.specs import branin


@pytest.fixture(autouse=True)
def own_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test with a key of its own: the user's real one stays out of it."""
    state = tmp_path / "state"
    monkeypatch.setenv("XDG_STATE_HOME", str(state))
    return state / "loopctl" / verified.KEY_FILE


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """A small campaign with a verified checkpoint: results, a failure, a trial running."""
    path = tmp_path / "v.db"
    with Campaign.create(branin(tmp_path, strategy={"method": "sobol"}), path) as c:
        for t in c.ask(4):
            c.tell(t.id, {"y": t.parameters["x1"] ** 2})
        (t,) = c.ask()
        c.fail(t.id, "film did not form")
        c.ask()
    first = checked(path)
    assert first.ok and first.tables.startswith("folded"), first
    assert checked(path).tables.startswith("unchanged since checked in full"), "not recorded"
    return path


def checked(db: Path, **kw: Any) -> Verdict:
    with Store.open(db, readonly=True) as store:
        return check(store, **kw)


def sql(db: Path, text: str, *args: Any) -> None:
    conn = sqlite3.connect(db)
    conn.execute(text, args)
    conn.commit()
    conn.close()


def one(db: Path, text: str, *args: Any) -> Any:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(text, args).fetchone()
    finally:
        conn.close()


def refusal(db: Path) -> str:
    with Store.open(db, readonly=True) as store, pytest.raises(TamperedError) as err:
        verified_spec(store)
    return str(err.value)


def rehash_from(db: Path, seq: int, to: int | None = None) -> None:
    """Give events ``seq`` to ``to`` (every later one: a careful forger's log, whose chain
    verifies again) the hash their content now has."""
    conn = sqlite3.connect(db)
    prev = conn.execute("SELECT hash FROM events WHERE seq = ?", (seq - 1,)).fetchone()
    prev = prev[0] if prev else GENESIS
    rows = conn.execute(
        "SELECT seq, time, kind, trial_id, payload FROM events WHERE seq BETWEEN ? AND ? "
        "ORDER BY seq",
        (seq, to if to is not None else 2**62),
    ).fetchall()
    for s, t, kind, trial, payload in rows:
        prev = event_hash(prev, s, t, kind, trial, payload)
        conn.execute("UPDATE events SET hash = ? WHERE seq = ?", (prev, s))
    conn.commit()
    conn.close()


def result_event(db: Path) -> int:
    return int(one(db, "SELECT MIN(seq) FROM events WHERE kind = 'trial_completed'")[0])


def edit_result(db: Path, seq: int, value: float = 0.0) -> None:
    (text,) = one(db, "SELECT payload FROM events WHERE seq = ?", seq)
    payload = json.loads(text)
    payload["outcomes"]["y"]["value"] = value
    sql(db, "UPDATE events SET payload = ? WHERE seq = ?", canonical(payload), seq)


def edit_rehashed(db: Path, *, last: bool) -> None:
    """A result edited and given the hash its content now has: the chain then breaks at the
    next event, or, with every later hash recomputed too (``last``), nowhere."""
    seq = result_event(db)
    edit_result(db, seq)
    rehash_from(db, seq, seq if not last else None)


EDITS: dict[str, Callable[[Path], None]] = {
    "event payload": lambda db: edit_result(db, result_event(db)),
    "event payload and its own hash": lambda db: edit_rehashed(db, last=False),
    "event payload and every hash after": lambda db: edit_rehashed(db, last=True),
    "event hash": lambda db: sql(
        db, "UPDATE events SET hash = ? WHERE seq = 5", "0" * 64
    ),  # the chain breaks there
    "event deleted": lambda db: sql(db, "DELETE FROM events WHERE seq = 7"),
    "last event deleted": lambda db: sql(db, "DELETE FROM events WHERE seq = ?", last(db)),
    "table row": lambda db: sql(db, "UPDATE observations SET value = value + 1 WHERE rowid = 2"),
    "table row deleted": lambda db: sql(db, "DELETE FROM trials WHERE id = 'T0003'"),
    "table row added": lambda db: sql(
        db, "INSERT INTO drivers (name, status) VALUES ('ghost', 'connected')"
    ),
    "float in its last bit": lambda db: sql(
        db, "UPDATE observations SET value = ? WHERE rowid = 1", nudged(db)
    ),
    "spec": lambda db: sql(
        db, "UPDATE meta SET value = json_set(value, '$.space[0].bounds[1]', 11) WHERE key='spec'"
    ),
}


def last(db: Path) -> int:
    return int(one(db, "SELECT MAX(seq) FROM events")[0])


def nudged(db: Path) -> float:
    (value,) = one(db, "SELECT value FROM observations WHERE rowid = 1")
    return float(value) + abs(float(value)) * 2**-52 + 5e-324  # the next double up


@pytest.mark.parametrize("what", list(EDITS))
def test_an_edit_after_a_checkpoint_is_caught_as_without_one(db: Path, what: str) -> None:
    """The same problems, first bad event and refusal as a full check finds: the checkpoint
    never stands in for a check of anything that changed."""
    EDITS[what](db)
    default, full = checked(db), checked(db, full=True)
    assert not default.ok, default
    assert default.problems == full.problems and default.chain == full.chain
    said = refusal(db)
    assert "changed outside loopctl" in said and "loopctl audit" in said
    assert default.problems[0]["message"] in said
    assert not checked(db).ok  # and it stays caught: no checkpoint was made of it


def test_a_forged_checkpoint_over_a_rewritten_log_is_not_used(db: Path) -> None:
    """The attack a checkpoint could open: a result edited in the log, every later hash
    recomputed (the chain verifies), and the checkpoint row set to the new log. The tables
    still hold the measured value, and only the fold can show it; a checkpoint written
    without the user's key does not verify, so the fold runs and names the event."""
    seq = result_event(db)
    edit_result(db, seq, value=-1.0)
    rehash_from(db, seq)
    conn = sqlite3.connect(db)
    n, head = conn.execute("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1").fetchone()
    conn.execute("UPDATE verified SET events = ?, head = ?, log = ?", (n, head, log_digest(conn)))
    conn.commit()
    conn.close()
    v = checked(db)
    assert not v.ok and v.problems[0]["event"] == seq, v.problems
    assert "written without the key" in v.tables
    assert f"(first bad: event {seq})" in refusal(db)
    # the same forgery signed with another key (another user's): not this user's checkpoint
    other = verified._mac(b"k" * verified.KEY_BYTES, _point(db), verified.fold_id())
    sql(db, "UPDATE verified SET mac = ?", other)
    assert not checked(db).ok


def _point(db: Path) -> verified.Point:
    conn = sqlite3.connect(db)
    try:
        n, head = conn.execute("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1").fetchone()
        return verified.Point(n, head, log_digest(conn), tables_digest(conn))
    finally:
        conn.close()


@pytest.mark.parametrize("column", ["events", "head", "log", "tables", "fold", "mac"])
def test_an_edited_checkpoint_alone_costs_a_full_check_and_is_made_again(
    db: Path, column: str
) -> None:
    """The checkpoint is a claim, never evidence: edited, it is not used (the full check
    decides, and finds the campaign intact), and a good one is recorded again."""
    value = 7 if column == "events" else "0" * 64
    sql(db, f"UPDATE verified SET {column} = ?", value)
    v = checked(db)
    assert v.ok and v.tables.startswith("folded"), v
    if column != "fold":  # another fold's checkpoint is stale, not forged
        assert "written without the key" in v.tables, v.tables
    assert checked(db).tables.startswith("unchanged"), "not recorded again"


def test_new_events_fall_back_to_the_full_check_and_move_the_checkpoint(db: Path) -> None:
    before = one(db, "SELECT events FROM verified")[0]
    with Campaign.open(db) as c:  # a campaign carrying on: events after the checkpoint
        (t,) = c.ask()
        c.tell(t.id, {"y": 3.0})
        added = last(db) - before
        v = checked(db)  # while its writer is open, as `status` beside a controller
    assert v.ok and f"({added} events since the last full check)" in v.tables, v.tables
    assert one(db, "SELECT events FROM verified")[0] == before + added
    assert checked(db).tables.startswith("unchanged")
    edit_result(db, result_event(db))  # and an edit after that checkpoint is still caught
    assert not checked(db).ok


def test_audit_full_folds_again_and_says_how_the_tables_were_checked(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from loopctl.cli import main

    assert main(["audit", str(db)]) == 0
    assert "tables: unchanged since checked in full (event" in capsys.readouterr().out
    assert main(["audit", str(db), "--full", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["tables"] == "folded from the log and compared row by row (asked for in full)"


def test_a_reader_never_waits_for_the_write_lock(db: Path) -> None:
    """A controller in the middle of a batch holds SQLite's write lock: the reading command
    checks in full and answers at once, without a checkpoint, rather than waiting."""
    sql(db, "DELETE FROM verified")
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        v = checked(db)
        assert v.ok and v.tables.startswith("folded")
        assert not verified.record(str(db), _point(db))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert one(db, "SELECT COUNT(*) FROM verified")[0] == 0
    assert checked(db).ok and checked(db).tables.startswith("unchanged")


@pytest.fixture
def read_only(db: Path) -> Iterator[Path]:
    sql(db, "DELETE FROM verified")
    os.chmod(db, 0o444)
    try:
        yield db
    finally:
        os.chmod(db, 0o644)


def test_a_read_only_file_is_checked_in_full_and_left_alone(read_only: Path) -> None:
    """Even as root, whom the kernel lets write it: a file made read-only is not written."""
    content = read_only.read_bytes()
    for _ in range(2):
        v = checked(read_only)
        assert v.ok and v.tables.startswith("folded"), v
    assert not verified.record(str(read_only), _point(read_only))
    assert read_only.read_bytes() == content
    assert one(read_only, "SELECT COUNT(*) FROM verified")[0] == 0


def test_without_a_key_every_check_is_full(db: Path, own_key: Path) -> None:
    sql(db, "DELETE FROM verified")
    own_key.write_bytes(b"short")  # not a key loopctl made: no checkpoints rather than weak
    verified._key_at.cache_clear()
    for _ in range(2):
        v = checked(db)
        assert v.ok and "no verified checkpoint for your key" in v.tables, v.tables
    assert one(db, "SELECT COUNT(*) FROM verified")[0] == 0


def test_another_users_checkpoint_is_kept_beside_ours(
    db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "someone-else"))
    assert checked(db).tables.startswith("folded")  # their first look: a full check
    assert checked(db).tables.startswith("unchanged")
    assert one(db, "SELECT COUNT(*) FROM verified")[0] == 2
    key = tmp_path / "someone-else" / "loopctl" / verified.KEY_FILE
    assert key.stat().st_mode & 0o777 == 0o600


def test_the_digests_see_types_and_exact_values() -> None:
    """Equal tables, equal digests, whatever objects held them; 1 and 1.0, or a float and
    the next one up, are different values to store, so different digests."""
    conn = sqlite3.connect(":memory:")
    conn.executescript(
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);"
        "CREATE TABLE observations (trial_id TEXT, metric TEXT, value, sem REAL, "
        "recorded_at REAL, PRIMARY KEY (trial_id, metric));"
    )
    conn.execute("INSERT INTO observations VALUES ('T1', 'y', 1.0, NULL, 0.0)")
    seen = [tables_digest(conn)]
    assert tables_digest(conn) == seen[0]  # the same twice
    for v in (1, "1.0", 1.0000000000000002):
        conn.execute("UPDATE observations SET value = ?", (v,))
        seen.append(tables_digest(conn))
    assert len(set(seen)) == 4, seen


def test_a_checkpoint_of_another_loopctl_is_not_used(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its fold need not be this one's: signed by the same key, but checked in full again."""
    with monkeypatch.context() as m:
        m.setattr(verified, "fold_id", lambda: "0.0.1 3.11 another fold")
        assert verified.record(str(db), _point(db))
    v = checked(db)
    assert v.ok and "made by another loopctl version" in v.tables, v.tables
    assert checked(db).tables.startswith("unchanged")


def test_the_checkpoints_time_is_only_said(db: Path) -> None:
    """Not signed, and not needed: an edited time neither voids the checkpoint nor breaks
    the words that show it."""
    sql(db, "UPDATE verified SET at = 'yesterday'")
    v = checked(db)
    assert v.ok and v.tables.startswith("unchanged") and "'yesterday'" in v.tables, v.tables
    sql(db, "UPDATE verified SET at = 1e300")
    assert checked(db).ok
