"""Verified checkpoints: what the last full check of a campaign database established, kept
in the database so that the next reading command need not fold the whole log again.

A full check (:mod:`loopctl.integrity`) proves that the derived tables are the fold of the
log. Folding 34,000 events takes over a second, and every reading command made that check;
yet between two commands the usual change is none at all. So once a check passes, a
*checkpoint* is recorded: the log's length, its last event's hash, and digests of every
event row and of the derived tables' contents. A later check reads both again: if the log
still ends at the same event and both digests are the same, the log and the tables are,
to the byte, what was proven consistent, and the verdict stands (for 34,000 events at load
12, 0.37 s, against 0.38 s for recomputing the chain alone and over a second for the fold).
Anything else (new events, any change to an event, a table or the checkpoint, no
checkpoint) means the full check, with the messages it always gave.

The checkpoint sits in the file it vouches for, so whoever can edit the file could write
one that matches an edited log. It is therefore signed (HMAC-SHA256) with a key of the
user's own, kept outside the database (``$XDG_STATE_HOME/loopctl/verified.key``, made on
first use, mode 0600). One row per key: a campaign read by two users, or on two machines,
keeps a checkpoint for each. A row that does not verify under the key it names is ignored
(and said so by ``audit``): the full check then decides, as it did before checkpoints.
Without a usable key (a read-only home) there are no checkpoints and every check is full.

The table is not a campaign's history: it is not an event, not folded, not compared
(integrity.DERIVED does not list it), and an older loopctl, which does not know it,
ignores it. A reader writes it only if it can without waiting: never while a controller
holds SQLite's write lock, never on a read-only file, and never taking the campaign's lock.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import importlib
import os
import sqlite3
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import loopctl
from loopctl import events, lifecycle, store

TABLE = "verified"
TABLE_SQL = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    key_id TEXT PRIMARY KEY,
    events INTEGER NOT NULL,
    head TEXT NOT NULL,
    log TEXT NOT NULL,
    tables TEXT NOT NULL,
    fold TEXT NOT NULL,
    at REAL NOT NULL,
    mac TEXT NOT NULL
)
"""
KEY_FILE = "verified.key"
KEY_BYTES = 32


@dataclass(frozen=True)
class Point:
    """What a passed full check saw: ``events`` in the log, the last one's hash ``head``,
    the digests of the log's rows (``log``) and of the derived tables (``tables``;
    integrity.log_digest and tables_digest)."""

    events: int
    head: str
    log: str
    tables: str


@dataclass(frozen=True)
class Found:
    """The checkpoint this user's key signed, as the database holds it now: ``point`` is
    None when there is none; ``forged`` when its signature does not verify (written by
    someone without the key); ``stale`` when it was made by another loopctl's fold."""

    point: Point | None
    at: float | None = None
    forged: bool = False
    stale: bool = False


def state_dir() -> Path:
    """Where loopctl keeps a user's own files (as the drivers' outbox, drivers/base.py)."""
    return Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local" / "state")) / "loopctl"


def key() -> tuple[str, bytes] | None:
    """(key id, key) of this user, made on first use; None if it cannot be read or made."""
    return _key_at(state_dir() / KEY_FILE)


@functools.cache
def _key_at(path: Path) -> tuple[str, bytes] | None:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        data = _make_key(path)
    except OSError:
        return None
    if len(data) != KEY_BYTES:  # not ours, or cut: no checkpoints rather than weak ones
        return None
    return hashlib.sha256(data).hexdigest()[:16], data


def _make_key(path: Path) -> bytes:
    """A new random key, written whole under another name and linked into place, so that
    two commands starting together agree on one key and never read half of one."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_name(f".{KEY_FILE}.{os.getpid()}.{os.urandom(4).hex()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, os.urandom(KEY_BYTES))
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)
        except FileExistsError:  # another command made it first: use that one
            pass
        finally:
            tmp.unlink()
        return path.read_bytes()
    except OSError:
        return b""


@functools.cache
def fold_id() -> str:
    """Which check a checkpoint was proven with: loopctl's version, the source of the
    modules that make and compare the fold (the event catalogue with its projections, the
    lifecycle, the tables' schema, the comparison) and Python's version (the digests
    marshal the rows). A checkpoint of any other is not used: what another loopctl's fold
    made need not be what this one makes. (About a millisecond: four files read.)"""
    h = hashlib.sha256()
    integrity = importlib.import_module("loopctl.integrity")  # which imports this module
    for module in (events, lifecycle, store, integrity):
        h.update(Path(str(module.__file__)).read_bytes())
    made = f"{loopctl.__version__} {sys.version_info[0]}.{sys.version_info[1]} "
    return made + h.hexdigest()[:16]


def _mac(secret: bytes, point: Point, fold: str) -> str:
    text = f"loopctl verified 1\n{point.events}\n{point.head}\n{point.log}\n{point.tables}\n{fold}"
    return hmac.new(secret, text.encode(), hashlib.sha256).hexdigest()


def find(conn: sqlite3.Connection) -> Found:
    """This user's checkpoint in the database ``conn`` reads, checked against its key."""
    k = key()
    if k is None:
        return Found(None)
    try:
        row = conn.execute(
            f"SELECT events, head, log, tables, fold, at, mac FROM {TABLE} WHERE key_id = ?",
            (k[0],),
        ).fetchone()
    except sqlite3.Error:  # no such table: never checked by a loopctl that records
        return Found(None)
    if row is None:
        return Found(None)
    n, head, log, tables, fold, at, mac = row
    try:
        point = Point(int(n), str(head), str(log), str(tables))
        good = hmac.compare_digest(_mac(k[1], point, str(fold)), str(mac))
    except (TypeError, ValueError):
        return Found(None, forged=True)
    if not good:
        return Found(None, forged=True)
    if fold != fold_id():
        return Found(None, at=at, stale=True)
    return Found(point, at=at)


def record(path: str, point: Point) -> bool:
    """Keep ``point`` as this user's checkpoint of the database at ``path``, if that can be
    done at once; False if not (no key, a read-only file or directory, a writer holding
    the write lock). Never waits: a reading command must not block behind a controller.

    Its own connection, read-write, opened only now: the reading command's stays
    read-only. ``point`` stays true whatever happened since it was seen (it says what
    the log and the tables were then), so nothing is read again under the write lock."""
    k = key()
    if k is None or path == ":memory:" or not _writable(path):
        return False
    try:  # mode=rw: never creates a file that was removed meanwhile
        conn = sqlite3.connect(
            f"file:{quote(path)}?mode=rw", uri=True, timeout=0, isolation_level=None
        )
    except sqlite3.Error:
        return False
    try:
        conn.execute("PRAGMA busy_timeout = 0")
        # a lost checkpoint costs one full check; never an fsync, nor a WAL checkpoint
        # of the controller's pages, in a reading command
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA wal_autocheckpoint = 0")
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(TABLE_SQL)
        conn.execute(
            f"INSERT OR REPLACE INTO {TABLE} (key_id, events, head, log, tables, fold, at, mac) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                k[0],
                point.events,
                point.head,
                point.log,
                point.tables,
                fold_id(),
                time.time(),
                _mac(k[1], point, fold_id()),
            ),
        )
        conn.execute("COMMIT")
        return True
    except sqlite3.Error:
        return False
    finally:
        conn.close()  # an open transaction is rolled back


def _writable(path: str) -> bool:
    """The kernel's answer (mode, an immutable flag, a read-only mount), and the mode's own:
    root may write a file its owner made read-only, which no reader should take as leave."""
    try:
        return os.access(path, os.W_OK) and bool(os.stat(path).st_mode & 0o222)
    except OSError:
        return False
