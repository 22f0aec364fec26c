"""The campaign database: hash chain, derived tables in step, locking, clear failures."""

from __future__ import annotations

import os
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from loopctl import Campaign
from loopctl.errors import CampaignLocked, StoreError
from loopctl.store import Store
from tests.conftest import loopctl
from tests.specs import branin


def small_campaign(tmp_path: Path) -> Path:
    db = tmp_path / "c.db"
    with Campaign.create(branin(tmp_path, strategy={"method": "sobol"}), db) as c:
        for t in c.ask(3):
            c.tell(t.id, {"y": t.parameters["x1"] + t.parameters["x2"]})
        (t,) = c.ask(1)
        c.fail(t.id, "sample cracked")
    return db


def test_pragmas_and_tables(tmp_path: Path) -> None:
    db = small_campaign(tmp_path)
    with Store.open(db) as s:
        assert s.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert s.conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    conn = sqlite3.connect(db)
    statuses = dict(conn.execute("SELECT status, COUNT(*) FROM trials GROUP BY status"))
    assert statuses == {"completed": 3, "failed": 1}
    assert conn.execute("SELECT COUNT(*) FROM observations WHERE metric = 'y'").fetchone()[0] == 3


def test_chain_verifies_and_any_edit_is_caught(tmp_path: Path) -> None:
    db = small_campaign(tmp_path)
    with Store.open(db, readonly=True) as s:
        ok, bad, _ = s.verify_chain()
    assert ok and bad is None
    edits = {
        'UPDATE events SET payload = replace(payload, \'"reason":"sample cracked"\', '
        "'\"reason\":\"fine\"') WHERE kind = 'trial_failed'": "trial_failed",
        "DELETE FROM events WHERE seq = 3": "missing",
        "UPDATE events SET time = time + 1 WHERE seq = 2": "event 2",
    }
    for sql, expected in edits.items():
        copy = tmp_path / "copy.db"
        copy.write_bytes(db.read_bytes())
        conn = sqlite3.connect(copy)
        conn.execute(sql)
        conn.commit()
        conn.close()
        with Store.open(copy, readonly=True) as s:
            ok, bad, msg = s.verify_chain()
        assert not ok and bad is not None and expected in msg, (sql, msg)
        copy.unlink()


def test_derived_tables_rebuild_from_events(tmp_path: Path) -> None:
    """The derived tables are a pure fold of the log: replaying it gives the same rows."""
    from loopctl.store import SCHEMA, project

    db = small_campaign(tmp_path)
    with Store.open(db, readonly=True) as s:
        events = list(s.events())
        original = {
            t: s.conn.execute(f"SELECT * FROM {t} ORDER BY 1, 2").fetchall()
            for t in ("trials", "observations", "proposals")
        }
    fresh = sqlite3.connect(":memory:")
    fresh.executescript(SCHEMA)
    for ev in events:
        project(fresh, ev)
    for table, rows in original.items():
        assert fresh.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall() == rows


def test_second_writer_refused(tmp_path: Path) -> None:
    db = small_campaign(tmp_path)
    with Campaign.open(db):
        with pytest.raises(CampaignLocked, match="in use by another controller"):
            Campaign.open(db)
        with Store.open(db, readonly=True) as s:  # readers are never blocked
            assert s.counts()["completed"] == 3
    with Campaign.open(db) as c:  # released on close
        assert len(c.trials()) == 4


def test_refuses_overwrite_and_foreign_files(tmp_path: Path) -> None:
    db = small_campaign(tmp_path)
    with pytest.raises(StoreError, match="already exists"):
        Campaign.create(branin(tmp_path), db)
    junk = tmp_path / "junk.db"
    junk.write_text("this is not sqlite " * 100)
    with pytest.raises(StoreError, match="not an SQLite database"):
        Store.open(junk)
    assert junk.read_text() == "this is not sqlite " * 100  # untouched
    plain = tmp_path / "plain.db"
    sqlite3.connect(plain).execute("CREATE TABLE t (x)").connection.commit()
    with pytest.raises(StoreError, match="not a loopctl campaign database"):
        Store.open(plain)
    with pytest.raises(StoreError, match="no such campaign database"):
        Store.open(tmp_path / "missing.db")


def test_write_lock_held_by_another_program_is_clear_and_loses_nothing(tmp_path: Path) -> None:
    db = small_campaign(tmp_path)
    other = sqlite3.connect(db, timeout=0)
    other.execute("BEGIN IMMEDIATE")  # e.g. a user's sqlite3 shell in the middle of an edit
    try:
        with Campaign.open(db) as c:
            c.store.conn.execute("PRAGMA busy_timeout = 100")
            before = c.store.counts()
            with pytest.raises(StoreError, match="another program holds a write lock"):
                c.ask(1)
    finally:
        other.rollback()
        other.close()
    with Campaign.open(db) as c:
        assert c.store.counts() == before
        assert c.store.verify_chain()[0]
        assert len(c.ask(1)) == 1  # works again once the lock is gone


def test_full_disk_is_clear_and_loses_nothing(tmp_path: Path) -> None:
    db = small_campaign(tmp_path)
    with Campaign.open(db) as c:
        before = c.store.counts()
        pages = c.store.conn.execute("PRAGMA page_count").fetchone()[0]
        c.store.conn.execute(f"PRAGMA max_page_count = {pages}")  # no room to grow: SQLITE_FULL
        with pytest.raises(StoreError, match="disk is full") as err:
            for _ in range(100):
                for t in c.ask(2):
                    c.tell(t.id, {"y": 1.0})
        assert "nothing recorded" in str(err.value)
    with Campaign.open(db) as c:  # space is back
        assert c.store.verify_chain()[0]
        assert c.store.counts()["completed"] >= before["completed"]
        (t,) = c.ask()
        c.tell(t.id, {"y": 2.0})


@contextmanager
def read_only(path: Path) -> Iterator[None]:
    """Read-only for real, even for root (who ignores permission bits): the immutable flag."""
    if os.geteuid() == 0:
        subprocess.run(["chattr", "+i", str(path)], check=True)  # ext4 and most others
        try:
            yield
        finally:
            subprocess.run(["chattr", "-i", str(path)], check=True)
    else:
        path.chmod(0o444)
        try:
            yield
        finally:
            path.chmod(0o644)


def test_read_only_file_is_clear_and_untouched(tmp_path: Path) -> None:
    db = small_campaign(tmp_path)
    content = db.read_bytes()
    with read_only(db):
        with pytest.raises(StoreError, match="the file is read-only"):
            Campaign.open(db)  # refused before anything is proposed, not at the first write
        st = loopctl("status", str(db), "--json")  # reading still works
        assert '"completed": 3' in st.stdout
    assert db.read_bytes() == content


def test_a_writer_hands_its_views_the_events_it_appended_as_the_log_has_them(
    tmp_path: Path,
) -> None:
    """Store.appended, what the controller's view folds instead of reading the log back:
    the same events as the log, and None (read the log) whenever it cannot be sure."""
    db = tmp_path / "c.db"
    with Campaign.create(branin(tmp_path, strategy={"method": "sobol"}), db) as c:
        store = c.store
        for t in c.ask(3):
            c.tell(t.id, {"y": 1.0})
        head, head_hash = store.conn.execute(
            "SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        assert store.appended(head, head_hash) == []
        assert store.appended(head, "0" * 64) is None  # not the event it knows
        for since in (0, 1, head - 3, head - 1):
            h = store.conn.execute("SELECT hash FROM events WHERE seq = ?", (since,)).fetchone()
            got = store.appended(since, h[0] if h else "")
            assert got == list(store.events(since=since))
        # a handler rolled back after a view read its event: that event is gone
        with store.batch() as b:
            with pytest.raises(RuntimeError), b.savepoint():
                b.add("campaign_paused", None, {"operator": "ana"})
                gone = b.events[-1]
                raise RuntimeError("handler failed halfway")
            assert store.appended(gone.seq, gone.hash) is None
            b.add("campaign_paused", None, {"operator": "bo"})
        news = store.appended(head, head_hash)
        assert news is not None and len(news) == 1
        again = news[0]
        assert again == next(store.events(since=head))
        assert again.seq == gone.seq and again.hash != gone.hash
        assert store.appended(gone.seq, gone.hash) is None
    with Store.open(db, readonly=True) as reader:  # appended nothing: always the log
        assert reader.appended(head, head_hash) is None
