"""A campaign database that cannot be used is named for what is wrong with it, never "repaired".

Every damage used to come out as "not a loopctl campaign database", a disk I/O error and a
read-only mount included, which sends a user looking for the wrong cure. Each case here is
a real file, directory or SQLite failure, tried through every command that opens a campaign.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from loopctl.errors import StoreError
from loopctl.store import Store
from tests.conftest import loopctl
from tests.test_store import read_only, small_campaign

READERS = (("status",), ("audit",), ("export", "--format", "csv"), ("report",))


def refusals(db: Path, tmp_path: Path, *commands: tuple[str, ...]) -> dict[str, str]:
    """Each command's error, after checking it failed cleanly (exit 1, no traceback)."""
    out = {}
    for cmd in commands:
        extra: tuple[str, ...] = ()
        if cmd[0] == "resume":  # should it start after all: on its own socket, not a port
            extra = ("--bind", f"ipc://{tmp_path}/ctl")
        elif cmd[0] == "report":
            extra = ("--out", str(tmp_path / "report"))
        r = loopctl(cmd[0], str(db), *cmd[1:], *extra, timeout=30, check=False)
        assert r.returncode == 1 and "Traceback" not in r.stderr, (cmd, r.stdout, r.stderr)
        assert r.stderr.startswith(f"error: {db}: "), (cmd, r.stderr)  # names the path first
        out[cmd[0]] = r.stderr
    return out


@contextmanager
def untouched(db: Path, *, allow: tuple[str, ...] = ()) -> Iterator[None]:
    """The file's bytes are what they were, and nothing new is beside it but the ``allow``ed
    sidecars (``-wal``, ``-shm``: what SQLite makes for any reader of a WAL database):
    nothing repaired, no loopctl tables or lock file added to a file that is not usable."""
    content, entries = db.read_bytes(), set(os.listdir(db.parent))
    yield
    assert db.read_bytes() == content
    new = set(os.listdir(db.parent)) - entries
    assert new <= {db.name + s for s in allow}, new


WAL = ("-wal", "-shm")


def test_a_missing_file_says_so(tmp_path: Path) -> None:
    db = tmp_path / "nope.db"
    for cmd, err in refusals(db, tmp_path, *READERS, ("resume",)).items():
        assert "no such campaign database" in err and "check the path" in err, (cmd, err)
    assert not list(tmp_path.glob("nope.db*"))


def test_random_bytes_are_not_an_sqlite_database(tmp_path: Path) -> None:
    db = tmp_path / "noise.db"
    db.write_bytes(os.urandom(16384))
    with untouched(db):
        for cmd, err in refusals(db, tmp_path, *READERS, ("resume",)).items():
            assert "not an SQLite database" in err, (cmd, err)
            assert "not a loopctl campaign" not in err, (cmd, err)


def test_an_sqlite_database_of_another_program_is_named_as_such(tmp_path: Path) -> None:
    db = tmp_path / "other.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE samples (id INTEGER PRIMARY KEY, name TEXT)")
    conn.execute("INSERT INTO samples (name) VALUES ('a')")
    conn.commit()
    conn.close()
    with untouched(db):  # a writing command used to add loopctl's tables to it
        for cmd, err in refusals(db, tmp_path, *READERS, ("resume",)).items():
            assert "an SQLite database but not a loopctl campaign" in err, (cmd, err)
            assert "samples" in err, (cmd, err)  # what it does hold
    with pytest.raises(StoreError, match="not a loopctl campaign"):
        Store.open(db)
    assert sqlite3.connect(db).execute("SELECT name FROM sqlite_master").fetchall() == [
        ("samples",)
    ]


def test_a_truncated_campaign_is_damaged_not_foreign(tmp_path: Path) -> None:
    whole = small_campaign(tmp_path)
    db = tmp_path / "half" / "c.db"
    db.parent.mkdir()
    data = whole.read_bytes()
    db.write_bytes(data[: len(data) // 2])  # an interrupted copy
    with untouched(db, allow=WAL):
        for cmd, err in refusals(db, tmp_path, *READERS, ("resume",)).items():
            assert "damaged" in err and "malformed" in err, (cmd, err)
            assert "not a loopctl campaign" not in err, (cmd, err)
            assert "restore" in err, (cmd, err)


@contextmanager
def read_only_dir(path: Path) -> Iterator[None]:
    """No new file can be made in it, even by root (who ignores permission bits): the
    immutable flag on the directory; mode 0555 for anyone else."""
    if os.geteuid() == 0:
        subprocess.run(["chattr", "+i", str(path)], check=True)
        try:
            yield
        finally:
            subprocess.run(["chattr", "-i", str(path)], check=True)
    else:
        path.chmod(0o555)
        try:
            yield
        finally:
            path.chmod(0o755)


def test_a_read_only_file_is_refused_by_a_writing_command_before_it_starts(
    tmp_path: Path,
) -> None:
    db = small_campaign(tmp_path)
    with read_only(db), untouched(db, allow=WAL):
        err = refusals(db, tmp_path, ("resume",))["resume"]
        assert "read-only" in err and "the file" in err and "copy" in err, err
        assert "not a loopctl campaign" not in err, err
        assert "controller listening" not in err
        with pytest.raises(StoreError, match="read-only"):
            Store.open(db)
        assert '"completed": 3' in loopctl("status", str(db), "--json").stdout  # reading works


def test_a_read_only_directory_is_named(tmp_path: Path) -> None:
    made = small_campaign(tmp_path)
    db = tmp_path / "archive" / "c.db"  # the file alone: no -lock, -wal or -shm beside it
    db.parent.mkdir()
    db.write_bytes(made.read_bytes())
    with read_only_dir(db.parent), untouched(db):
        err = refusals(db, tmp_path, ("resume",))["resume"]
        assert "read-only" in err and f"directory {db.parent}" in err, err
        assert "Errno" not in err and "not a loopctl campaign" not in err, err


def test_a_disk_io_error_is_reported_as_one(tmp_path: Path) -> None:
    """A real SQLITE_IOERR from SQLite's own file layer: the shared-memory file beside a WAL
    database is not a file it can map (here a FIFO, where a failing disk gives EIO)."""
    made = small_campaign(tmp_path)
    db = tmp_path / "io" / "c.db"
    db.parent.mkdir()
    db.write_bytes(made.read_bytes())
    os.mkfifo(f"{db}-shm")
    with untouched(db, allow=WAL):
        for cmd, err in refusals(db, tmp_path, *READERS, ("resume",)).items():
            assert "disk I/O error" in err and "SQLITE_IOERR" in err, (cmd, err)
            assert "not a loopctl campaign" not in err and "damaged" not in err, (cmd, err)


def pages_of(db: Path, name: str) -> list[int]:
    conn = sqlite3.connect(db)
    pages = [p for (p,) in conn.execute("SELECT pageno FROM dbstat WHERE name = ?", (name,))]
    conn.close()
    return pages


@pytest.mark.parametrize("part", ["events", "events_trial"])
def test_damage_deep_in_the_file_is_found_on_opening(tmp_path: Path, part: str) -> None:
    """A page of the log, or of an index, overwritten (a disk fault, a bad sector copied):
    the first pages read fine, so this used to surface as a traceback halfway through a
    command, or (an index) not at all, with wrong answers from what the index finds."""
    made = small_campaign(tmp_path)
    db = tmp_path / "bad" / "c.db"
    db.parent.mkdir()
    db.write_bytes(made.read_bytes())
    size = sqlite3.connect(db).execute("PRAGMA page_size").fetchone()[0]
    page = pages_of(db, part)[-1]
    with open(db, "r+b") as f:
        f.seek((page - 1) * size)
        f.write(b"\xff" * size)
    with untouched(db, allow=WAL):
        for cmd, err in refusals(db, tmp_path, *READERS, ("resume",)).items():
            assert "damaged" in err and "restore" in err, (cmd, err)
