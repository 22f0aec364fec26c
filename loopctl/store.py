"""Campaign database: an append-only, hash-chained event log plus derived tables.

The ``events`` table is the truth. ``trials``, ``observations``, ``proposals``,
``drivers`` and ``meta`` are a fold over it, updated by :func:`project` inside
the same transaction as the event that changes them, so they can never
disagree after a crash, and can be rebuilt from the log to audit them.

Durability: WAL mode with ``synchronous=FULL`` by default; callers group the
events that arrive together into one :meth:`Store.batch` (one fsync), and only
act on them (acknowledge, dispatch) after the batch has committed.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import socket
import sqlite3
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from json.encoder import encode_basestring as _json_string  # what canonical() writes strings with
from pathlib import Path
from typing import Any
from urllib.parse import quote

from loopctl import faults
from loopctl.canonical import canonical, sha256_hex
from loopctl.errors import CampaignLocked, StoreError, StoreReplaced
from loopctl.events import Event, check_payload, project

__all__ = ["Batch", "Event", "Store", "project"]

LOG_FORMAT = 1  # the events' format, recorded in campaign_created: unchanged since the first
# The database's format (meta row ``format_version``; a database without one is format 1):
# what may be around the log, and what MIGRATIONS bring an older one up to.
FORMAT_VERSION = 2
GENESIS = "0" * 64
SYNC_MODES = ("FULL", "NORMAL", "EXTRA")
PARAMS_CACHED = 4096  # trials whose parsed parameters a store keeps (Store.parameters)
TAIL = 1024  # events a writer keeps after appending them, for its views (Store.appended)
# events that number a new row: kind -> the table whose numbers they take
_NUMBERED = {"trial_proposed": "trials", "trial_imported": "trials", "proposal_made": "proposals"}


def event_hash(
    prev_hash: str, seq: int, t: float, kind: str, trial_id: str | None, payload_json: str
) -> str:
    """sha256(prev_hash + canonical event); seq, time and kind are covered too."""
    return sha256_hex(prev_hash + event_header(seq, t, kind, trial_id) + payload_json)


def event_header(seq: int, t: float, kind: str, trial_id: str | None) -> str:
    """``canonical({"seq": seq, "time": t, "kind": kind, "trial_id": trial_id})``, written
    out directly for the values the log holds (a fifth of the time: every check of the
    chain makes one per event); anything else, as a tampered row may hold, goes through
    :func:`canonical` itself."""
    if (
        type(seq) is int
        and type(t) is float
        and type(kind) is str
        and (trial_id is None or type(trial_id) is str)
        and math.isfinite(t)
    ):
        tid = "null" if trial_id is None else _json_string(trial_id)
        head = f'{{"kind":{_json_string(kind)},"seq":{seq},"time":{float.__repr__(t)},'
        return f'{head}"trial_id":{tid}}}'
    return canonical({"seq": seq, "time": t, "kind": kind, "trial_id": trial_id})


SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,
    time REAL NOT NULL,
    kind TEXT NOT NULL,
    trial_id TEXT,
    payload TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_trial ON events(trial_id);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS trials (
    id TEXT PRIMARY KEY,
    number INTEGER NOT NULL,
    status TEXT NOT NULL,
    origin TEXT NOT NULL,
    proposal_id TEXT,
    parameters TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    driver TEXT,
    created_at REAL,
    started_at REAL,
    finished_at REAL,
    deadline REAL,
    reason TEXT
);
CREATE INDEX IF NOT EXISTS trials_status ON trials(status);
CREATE TABLE IF NOT EXISTS observations (
    trial_id TEXT NOT NULL,
    metric TEXT NOT NULL,
    value REAL NOT NULL,
    sem REAL,
    recorded_at REAL NOT NULL,
    PRIMARY KEY (trial_id, metric)
);
CREATE TABLE IF NOT EXISTS proposals (
    id TEXT PRIMARY KEY,
    number INTEGER NOT NULL,
    strategy TEXT NOT NULL,
    version TEXT NOT NULL,
    seed INTEGER NOT NULL,
    trial_ids TEXT NOT NULL,
    sobol_drawn INTEGER NOT NULL DEFAULT 0,
    diagnostics TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS drivers (
    name TEXT PRIMARY KEY,
    kind TEXT,
    version TEXT,
    capacity INTEGER,
    status TEXT NOT NULL,
    connected_at REAL,
    updated_at REAL,
    reason TEXT
);
"""


class Store:
    """One open campaign database. Writers hold an exclusive lock for their lifetime."""

    def __init__(self, path: str, conn: sqlite3.Connection, lock_fd: int | None) -> None:
        self.path = path
        self.conn = conn
        self._lock_fd = lock_fd
        self._in_batch = False
        self._last: tuple[int, str] | None = None
        # table -> its highest number, kept by this (the only) writer from what it appends:
        # numbering a trial then costs no scan of the table; dropped with _last on rollback
        self._numbers: dict[str, int] = {}
        self._params: dict[str, tuple[str, dict[str, Any]]] = {}
        # the events this writer appended last, as it wrote them: views fold them from here
        # instead of reading them back; emptied with _last whenever a write is rolled back
        self._tail: deque[Event] = deque(maxlen=TAIL)
        self.synchronous = "FULL"
        self._files: dict[str, int] = {}  # writer: path -> inode of the files it writes

    # ------------------------------------------------------------------ opening

    @classmethod
    def create(
        cls,
        path: str | Path,
        spec_raw: Mapping[str, Any],
        spec_hash: str,
        versions: Mapping[str, str],
        synchronous: str = "FULL",
        source: str | None = None,
    ) -> Store:
        """Make a new campaign database; refuses to overwrite anything."""
        p = str(path)
        if p != ":memory:" and os.path.exists(p):
            raise StoreError(f"{p}: already exists; use `loopctl resume` or choose another --db")
        if p != ":memory:":
            parent = os.path.dirname(os.path.abspath(p))
            if not os.path.isdir(parent):
                raise StoreError(f"{p}: directory {parent} does not exist")
        store = cls._connect(p, readonly=False, synchronous=synchronous, lock=True)
        with store.batch() as b:
            b.add(
                "campaign_created",
                None,
                {
                    "format": LOG_FORMAT,
                    # who this campaign is, on the wire: results carry it back, so one
                    # measured for another campaign (on the same endpoint) is refused
                    "campaign_id": uuid.uuid4().hex,
                    "spec": dict(spec_raw),
                    "spec_hash": spec_hash,
                    "versions": dict(versions),
                    "host": socket.gethostname(),
                    "source": source,
                },
            )
            _set_format(store.conn, FORMAT_VERSION)
        return store

    @classmethod
    def open(cls, path: str | Path, *, readonly: bool = False, synchronous: str = "FULL") -> Store:
        """Open an existing campaign; a file that cannot be one is refused, named for what it
        is (missing, not SQLite, damaged, another program's, unreadable, read-only).

        Whether it is a campaign is settled through a read-only connection before anything
        writes: a writing connection to a file that is not a campaign would add loopctl's
        tables to it, switch it to WAL or roll back another program's journal, "repairs"
        nobody asked for that leave the file less like the evidence it was."""
        p = str(path)
        if not os.path.exists(p):
            raise StoreError(f"{p}: no such campaign database (check the path)")
        if os.path.isdir(p):
            raise StoreError(f"{p}: is a directory, not a campaign database (check the path)")
        store = cls._connect(p, readonly=True, synchronous=synchronous, lock=False)
        try:
            store._identify()
        except BaseException:
            store.close()
            raise
        if readonly:
            return store
        store.close()
        if not os.access(p, os.W_OK):  # the kernel's answer: mode, immutable flag, ro mount
            raise StoreError(f"{p}: {_unwritable(p)}")
        store = cls._connect(p, readonly=False, synchronous=synchronous, lock=True)
        try:
            store.migrate()
        except BaseException:
            store.close()
            raise
        return store

    def format_version(self) -> int:
        """The database's format: 1 for one made before formats were recorded."""
        row = self.conn.execute("SELECT value FROM meta WHERE key = 'format_version'").fetchone()
        return 1 if row is None else int(json.loads(row[0]))

    def migrate(self) -> list[int]:
        """Bring a database of an older format up to :data:`FORMAT_VERSION`; returns the
        formats it went through. Only a writer migrates, holding the campaign's lock and
        SQLite's write lock, all steps in one transaction: a reader (`status`, `audit`)
        leaves the file as it found it, and a crash halfway leaves the old format whole."""
        if self.format_version() >= FORMAT_VERSION:
            return []
        done = []
        with self.batch():
            version = self.format_version()  # again, under the write lock
            while version < FORMAT_VERSION:
                step = MIGRATIONS.get(version)
                if step is None:
                    raise StoreError(f"{self.path}: no migration from database format {version}")
                step(self.conn)
                version += 1
                _set_format(self.conn, version)
                done.append(version)
        return done

    def _identify(self) -> None:
        """Refuse, naming what the file is instead, unless it is a campaign this loopctl reads.
        A first read is where SQLite finds out that a file is not SQLite, damaged, or
        unreadable; each needs a different cure, so none of them is called "not a campaign"."""
        try:
            tables = {
                name
                for (name,) in self.conn.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table'"
                )
            }
            if not {"events", "meta"} <= tables:
                raise StoreError(f"{self.path}: {_foreign(self.path, tables)}")
            # SQLite's own structural check (every page of every table and index; ~20 ms
            # for 2,000 trials): damage past the first pages would otherwise surface halfway
            # through a command, or, in an index, never, as wrong answers
            (verdict,) = self.conn.execute("PRAGMA quick_check(1)").fetchone()
            if verdict != "ok":
                where = verdict.replace("*** in database main ***", "").strip()
                raise StoreError(f"{self.path}: {_damaged(self.path, f'SQLite: {where}')}")
            fmt = self.meta("format")
        except sqlite3.Error as exc:
            raise sqlite_failure(self.path, exc) from None
        if fmt is None:
            raise StoreError(
                f"{self.path}: not a loopctl campaign database (no campaign_created event: "
                "its creation was interrupted before the campaign existed); create it again"
            )
        try:
            version = self.format_version()
        except (sqlite3.Error, TypeError, ValueError):
            raise StoreError(
                f"{self.path}: its meta row format_version is not a number; restore the "
                "database from a copy"
            ) from None
        if int(fmt) > LOG_FORMAT or version > FORMAT_VERSION:
            raise StoreError(
                f"{self.path}: written by a newer loopctl (format {max(int(fmt), version)}); "
                "upgrade loopctl"
            )

    @classmethod
    def _connect(cls, path: str, *, readonly: bool, synchronous: str, lock: bool) -> Store:
        if synchronous.upper() not in SYNC_MODES:
            raise StoreError(f"synchronous must be one of {', '.join(SYNC_MODES)}")
        try:
            lock_fd = _take_lock(path) if lock and path != ":memory:" else None
        except OSError as exc:  # the lock file is made beside the database
            raise StoreError(
                f"{path}: cannot create its lock file {lock_path(path)} ({exc.strerror}): "
                f"{_unwritable(path)}"
            ) from None
        try:
            if readonly:  # a URI: quoted, so that a "?" or "%" in a path stays part of it
                conn = sqlite3.connect(
                    f"file:{quote(path)}?mode=ro",
                    uri=True,
                    isolation_level=None,
                    check_same_thread=False,
                )
            else:
                conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA busy_timeout = 5000")
            if not readonly:
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute(f"PRAGMA synchronous = {synchronous.upper()}")
                conn.executescript(SCHEMA)
        except sqlite3.Error as exc:
            if lock_fd is not None:
                os.close(lock_fd)
            raise sqlite_failure(path, exc, writing=not readonly) from None
        store = cls(path, conn, lock_fd)
        store.synchronous = synchronous.upper()
        return store

    def set_synchronous(self, mode: str) -> None:
        """What a resumed campaign ran with before, unless told otherwise."""
        if mode.upper() not in SYNC_MODES:
            raise StoreError(f"synchronous must be one of {', '.join(SYNC_MODES)}")
        self.conn.execute(f"PRAGMA synchronous = {mode.upper()}")
        self.synchronous = mode.upper()

    def run_settings(self) -> dict[str, Any]:
        """How the campaign was last run: trials (the budget), endpoint, synchronous. What
        `resume` uses unless told otherwise; older databases have only the controller's
        last target."""
        settings = dict(self.meta("run_settings") or {})
        if "trials" not in settings:
            target = (self.meta("controller") or {}).get("target")
            if target:
                settings["trials"] = target
        return settings

    def _check_files(self) -> None:
        """Deleting or replacing the database or its WAL under a running writer goes
        unnoticed by SQLite, which keeps writing to the old (unlinked) files: every commit
        from then on would be acknowledged and lost. Each batch checks both first."""
        if self.path == ":memory:":
            return
        for path in (self.path, self.path + "-wal"):
            try:
                ino = os.stat(path).st_ino
            except FileNotFoundError:
                ino = -1
            known = self._files.get(path, -1)
            if known == -1:  # first look, or a WAL SQLite has not created yet
                self._files[path] = ino
            elif ino != known:
                what = "its WAL" if path.endswith("-wal") else "the database file"
                raise StoreReplaced(
                    f"{self.path}: {what} ({path}) was {'deleted' if ino == -1 else 'replaced'} "
                    "behind loopctl's back since it was opened; nothing more is written or "
                    "acknowledged (copy what is left, then restore or resume from a copy)"
                )

    def close(self) -> None:
        self.conn.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ writing

    @contextmanager
    def batch(self) -> Iterator[Batch]:
        """One transaction: events appended and projected; committed (fsync) on exit."""
        if self._in_batch:
            raise RuntimeError("nested batch")
        self._check_files()
        self._in_batch = True
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            self._in_batch = False
            raise StoreError(
                f"{self.path}: cannot write: {_explain(exc, self.path, writing=True)}"
            ) from None
        b = Batch(self)
        try:
            yield b
            faults.inject("disk_full")
            self.conn.execute("COMMIT")
        except BaseException as exc:
            self._forget()
            try:
                self.conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            if isinstance(exc, sqlite3.Error):
                raise StoreError(
                    f"{self.path}: write failed, nothing recorded: "
                    f"{_explain(exc, self.path, writing=True)}"
                ) from None
            raise
        finally:
            self._in_batch = False

    def _append(self, kind: str, trial_id: str | None, payload: Mapping[str, Any]) -> Event:
        if self._last is None:
            row = self.conn.execute(
                "SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1"
            ).fetchone()
            self._last = (row[0], row[1]) if row else (0, GENESIS)
        seq, prev = self._last[0] + 1, self._last[1]
        entry = check_payload(kind, payload, writing=True)
        kind = str(kind)  # an EventKind is written as its value
        t = time.time()
        payload_json = canonical(payload)
        h = event_hash(prev, seq, t, kind, trial_id, payload_json)
        self.conn.execute(
            "INSERT INTO events (seq, time, kind, trial_id, payload, hash) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (seq, t, kind, trial_id, payload_json, h),
        )
        # the payload as a reader of the log gets it (a fresh object, JSON's types)
        ev = Event(seq, t, kind, trial_id, json.loads(payload_json), h)
        project(self.conn, ev, entry)
        self._last = (seq, h)
        self._tail.append(ev)
        table = _NUMBERED.get(kind)
        if table is not None and table in self._numbers:
            self._numbers[table] = max(self._numbers[table], int(ev.payload["number"]))
        return ev

    def _forget(self) -> None:
        """What was appended may have been rolled back: read the head and numbers again."""
        self._last = None
        self._numbers.clear()
        self._tail.clear()

    def appended(self, seq: int, h: str) -> list[Event] | None:
        """The events this writer appended after event ``seq``, if that event (with hash
        ``h``) is still the one it knows and it has kept every event since; None when the
        caller must read the log instead (a reader's store, a rollback, a long gap)."""
        if self._last is None or not self._tail:
            return None
        last = self._last[0]
        if last == seq:
            return [] if self._last[1] == h else None
        tail = self._tail
        first = tail[0].seq
        if not first - 1 <= seq < last:
            return None
        if seq >= first and tail[seq - first].hash != h:
            return None
        if seq == first - 1:  # the one before the tail: its hash is the first's predecessor
            return None if seq and not self._known(seq, h) else list(tail)
        return list(tail)[seq - first + 1 :]

    def _known(self, seq: int, h: str) -> bool:
        row = self.conn.execute("SELECT hash FROM events WHERE seq = ?", (seq,)).fetchone()
        return row is not None and row[0] == h

    # ------------------------------------------------------------------ reading

    def meta(self, key: str) -> Any:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def campaign_id(self) -> str:
        """The campaign's identity on the wire: made at creation; for a database made
        before there was one, derived from its first event's hash, which never changes."""
        cid = self.meta("campaign_id")
        if cid:
            return str(cid)
        row = self.conn.execute("SELECT hash FROM events WHERE seq = 1").fetchone()
        if row is None:
            raise StoreError(f"{self.path}: no campaign_created event")
        return str(row[0])[:32]

    def sent_to(self, trial_id: str, driver: str) -> bool:
        """Was this trial ever dispatched to (or reclaimed by) the driver of this name?"""
        row = self.conn.execute(
            "SELECT 1 FROM events WHERE trial_id = ? AND kind IN "
            "('trial_dispatched', 'trial_reclaimed') AND json_extract(payload, '$.driver') = ? "
            "LIMIT 1",
            (trial_id, driver),
        ).fetchone()
        return row is not None

    def events(self, since: int = 0) -> Iterator[Event]:
        cur = self.conn.execute(
            "SELECT seq, time, kind, trial_id, payload, hash FROM events "
            "WHERE seq > ? ORDER BY seq",
            (since,),
        )
        for seq, t, kind, trial_id, payload, h in cur:
            yield Event(seq, t, kind, trial_id, json.loads(payload), h)

    def trial_events(self, trial_id: str) -> list[Event]:
        """A trial's events, newest first."""
        cur = self.conn.execute(
            "SELECT seq, time, kind, trial_id, payload, hash FROM events WHERE trial_id = ? "
            "ORDER BY seq DESC",
            (trial_id,),
        )
        return [Event(q, t, k, i, json.loads(p), h) for q, t, k, i, p, h in cur]

    def trial(self, trial_id: str) -> dict[str, Any] | None:
        rows = self._trial_rows("WHERE id = ?", (trial_id,))
        return rows[0] if rows else None

    def trials(self, *statuses: str) -> list[dict[str, Any]]:
        if not statuses:
            return self._trial_rows("ORDER BY number", ())
        marks = ",".join("?" for _ in statuses)
        return self._trial_rows(f"WHERE status IN ({marks}) ORDER BY number", statuses)

    def _trial_rows(self, where: str, args: tuple[Any, ...]) -> list[dict[str, Any]]:
        cur = self.conn.execute(f"SELECT * FROM trials {where}", args)
        names = [c[0] for c in cur.description]
        out = []
        for row in cur:
            d = dict(zip(names, row, strict=True))
            d["parameters"] = self.parameters(d["id"], d["parameters"])
            out.append(d)
        return out

    def parameters(self, trial_id: str, text: str) -> dict[str, Any]:
        """Parsed parameters of a trial; cached, since they never change once proposed.
        Callers get a copy so that nobody can alter the cache by accident. Only the most
        recently parsed are kept (the trials in flight are read again and again, finished
        ones seldom): a cache of every trial would grow with the campaign."""
        cached = self._params.get(trial_id)
        if cached is None or cached[0] != text:
            cached = (text, json.loads(text))
            self._params[trial_id] = cached
            if len(self._params) > PARAMS_CACHED:  # the oldest entry goes
                del self._params[next(iter(self._params))]
        return dict(cached[1])

    def counts(self) -> dict[str, int]:
        return {
            s: n
            for s, n in self.conn.execute("SELECT status, COUNT(*) FROM trials GROUP BY status")
        }

    def observations(self) -> dict[str, dict[str, tuple[float, float | None]]]:
        out: dict[str, dict[str, tuple[float, float | None]]] = {}
        for tid, metric, value, sem in self.conn.execute(
            "SELECT trial_id, metric, value, sem FROM observations"
        ):
            out.setdefault(tid, {})[metric] = (value, sem)
        return out

    @property
    def db(self) -> Any:
        """The connection as a ``sqlite_utils.Database``, for tools; imported on first use
        (it imports pandas, a second or two that `status` should not pay)."""
        import sqlite_utils

        return sqlite_utils.Database(self.conn)

    def _query(self, sql: str) -> list[dict[str, Any]]:
        cur = self.conn.execute(sql)
        names = [c[0] for c in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur]

    def proposals(self) -> list[dict[str, Any]]:
        rows = self._query("SELECT * FROM proposals ORDER BY number")
        return [
            dict(r, trial_ids=json.loads(r["trial_ids"]), diagnostics=json.loads(r["diagnostics"]))
            for r in rows
        ]

    def drivers(self) -> list[dict[str, Any]]:
        return self._query("SELECT * FROM drivers ORDER BY name")

    def next_number(self, table: str) -> int:
        """The number the next trial or proposal takes. Inside a batch, from what this writer
        has appended since it last read the table (the table has no index on numbers)."""
        known = self._numbers.get(table) if self._in_batch else None
        if known is None:
            row = self.conn.execute(f"SELECT COALESCE(MAX(number), 0) FROM {table}").fetchone()
            known = int(row[0])
            if self._in_batch:
                self._numbers[table] = known
        return known + 1

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """Reads that all see one moment of the database, even while its controller writes:
        the log and the tables folded from it can only be compared at the same moment."""
        if self.conn.in_transaction:  # inside a batch: already one moment
            yield
            return
        self.conn.execute("BEGIN")
        try:
            yield
        finally:
            self.conn.execute("COMMIT")

    def verify_chain(self) -> tuple[bool, int | None, str]:
        """Recompute every hash; returns (ok, first bad seq, message)."""
        prev, expected_seq = GENESIS, 1
        for seq, t, kind, trial_id, payload, h in self.conn.execute(
            "SELECT seq, time, kind, trial_id, payload, hash FROM events ORDER BY seq"
        ):
            if seq != expected_seq:
                return False, expected_seq, f"event {expected_seq} is missing"
            if event_hash(prev, seq, t, kind, trial_id, payload) != h:
                return False, seq, f"event {seq} ({kind}) does not match its hash"
            prev, expected_seq = h, seq + 1
        return True, None, f"{expected_seq - 1} events verified"


class Batch:
    """Handle passed to code that records events inside one transaction."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.events: list[Event] = []

    def add(self, kind: str, trial_id: str | None, payload: Mapping[str, Any]) -> Event:
        ev = self.store._append(kind, trial_id, payload)
        self.events.append(ev)
        return ev

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """All-or-nothing for one message inside a group commit: a handler that fails
        halfway leaves no trace, while the other messages of the batch still commit."""
        conn, mark = self.store.conn, len(self.events)
        conn.execute("SAVEPOINT message")
        try:
            yield
        except BaseException:
            conn.execute("ROLLBACK TO message")
            conn.execute("RELEASE message")
            del self.events[mark:]
            self.store._forget()
            raise
        conn.execute("RELEASE message")


def lock_path(path: str) -> str:
    return path + "-lock"


def _take_lock(path: str) -> int:
    """Exclusive advisory lock beside the database; released by the kernel on any exit.

    A sidecar file rather than the database itself: closing any descriptor of
    the database would drop SQLite's own POSIX locks held by this process.
    """
    fd = os.open(lock_path(path), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        who = os.pread(fd, 200, 0).decode(errors="replace").strip() or "holder unknown"
        os.close(fd)
        raise CampaignLocked(
            f"{path}: in use by another controller or open Campaign ({who}); "
            "stop it first, or use `loopctl status` to look without writing"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}".encode(), 0)
    return fd


def is_locked(path: str) -> bool:
    """True while a writer holds the campaign (used by `status` to say if it is running)."""
    try:
        fd = os.open(lock_path(path), os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def sqlite_failure(path: str, exc: sqlite3.Error, *, writing: bool = False) -> StoreError:
    """What SQLite's failure on a campaign database means, as the error a user reads.

    For readers that meet damage after :meth:`Store.open` (a page deep in the file that
    only the full check reads), so that it is named the same as damage found on opening."""
    return StoreError(f"{path}: {_explain(exc, path, writing=writing)}")


def _explain(exc: sqlite3.Error, path: str, *, writing: bool = False) -> str:
    """What it is and what to do, SQLite's own words kept in brackets.

    By SQLite's result code where there is one: its messages are terse and alike ("unable
    to open database file" is said of a missing directory, an unreadable file and a
    read-only one), and a cure chosen from the wrong diagnosis can cost the data."""
    text = str(exc)
    code = getattr(exc, "sqlite_errorcode", None)
    name = getattr(exc, "sqlite_errorname", None)
    primary = code & 0xFF if isinstance(code, int) else _code_from_text(text)
    said = f"SQLite: {text}" + (f", {name}" if name else "")
    if primary in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        return f"another program holds a write lock on the database ({said}); close it and retry"
    if primary == sqlite3.SQLITE_FULL:
        return f"the disk is full ({said}): free space and retry"
    if primary == sqlite3.SQLITE_READONLY:
        return f"{_unwritable(path)} ({said})"
    if primary == sqlite3.SQLITE_NOTADB:
        return (
            f"not an SQLite database ({said}), so not a campaign database: check the path "
            "(a campaign damaged at its very start reads the same: then restore it from a "
            "copy); the file is left as it is"
        )
    if primary == sqlite3.SQLITE_CORRUPT:
        return _damaged(path, said)
    if primary == sqlite3.SQLITE_IOERR:
        return (
            f"disk I/O error ({said}) on it or on its -wal/-shm files beside it: the disk, "
            "the file system or a network mount failed; the file is left as it is. Check the "
            "disk (`dmesg`), copy the database and any -wal beside it to a sound disk and use "
            "the copy"
        )
    if primary == sqlite3.SQLITE_CANTOPEN:
        return f"cannot be opened ({said}): {_cannot_open(path, writing)}"
    if primary in (sqlite3.SQLITE_PERM, sqlite3.SQLITE_AUTH):
        return f"permission denied ({said}): check the file's owner and mode"
    return said


def _damaged(path: str, said: str) -> str:
    return (
        f"damaged: SQLite finds it malformed ({said}): a truncated or interrupted copy, a "
        "disk fault or a write from outside; the file is left as it is. Use a good copy "
        "(restore it from a backup, or copy it again from the machine it ran on); to salvage "
        f"what is readable: `sqlite3 {path} .recover | sqlite3 NEW.db`, then "
        "`loopctl audit NEW.db`"
    )


def _code_from_text(text: str) -> int | None:
    """Errors made in Python (fault injection) carry no result code: read it off the words."""
    for words, code in (
        (("locked", "busy"), sqlite3.SQLITE_BUSY),
        (("full",), sqlite3.SQLITE_FULL),
        (("readonly", "read-only"), sqlite3.SQLITE_READONLY),
        (("not a database",), sqlite3.SQLITE_NOTADB),
        (("malformed",), sqlite3.SQLITE_CORRUPT),
        (("disk I/O",), sqlite3.SQLITE_IOERR),
        (("unable to open",), sqlite3.SQLITE_CANTOPEN),
    ):
        if any(w in text for w in words):
            return code
    return None


def _unwritable(path: str) -> str:
    """Which part is read-only: the file itself, or the directory where SQLite and loopctl
    must make the -wal, -shm and -lock files beside it."""
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.exists(path) and not os.access(path, os.W_OK):
        which = "the file is read-only (its mode, an immutable flag or a read-only mount)"
    elif not os.access(folder, os.W_OK):
        which = f"its directory {folder} is read-only (new files cannot be made beside it)"
    else:
        which = "it was opened read-only"
    return (
        f"cannot be written: {which}; this command writes to the campaign: make it writable, "
        "or copy the campaign to a writable place and use the copy (`loopctl status`, `audit` "
        "and `export` only read it)"
    )


def _foreign(path: str, tables: set[str]) -> str:
    """A readable SQLite file without a campaign's tables: name what it holds, so that a
    wrong path is recognised at once."""
    if not tables:
        size = os.path.getsize(path)
        what = "an empty file" if size == 0 else "an SQLite database with no tables"
        return f"{what}, not a loopctl campaign database: check the path"
    shown = ", ".join(sorted(tables)[:8]) + (", ..." if len(tables) > 8 else "")
    return (
        f"an SQLite database but not a loopctl campaign database (its tables: {shown}; a "
        "campaign has events and meta): check the path; the file is left as it is"
    )


def _cannot_open(path: str, writing: bool) -> str:
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.exists(path) and not os.access(path, os.R_OK):
        return "permission denied: you may not read it; check the file's owner and mode"
    for side in (path + "-wal", path + "-shm"):
        if os.path.lexists(side) and not os.path.isfile(side):
            return (
                f"{side} beside it is not a regular file: move it away, once no program "
                "uses the campaign"
            )
    missing = [s for s in (path + "-wal", path + "-shm") if not os.path.exists(s)]
    if missing and not os.access(folder, os.W_OK):
        return (
            f"its directory {folder} is read-only and SQLite must make {' and '.join(missing)} "
            "there to open a WAL database: make the directory writable, or copy the campaign "
            "to a writable place"
        )
    return "check that the file and its directory exist and are yours" + (
        " to write" if writing else " to read"
    )


# ---------------------------------------------------------------------- formats


def _set_format(conn: sqlite3.Connection, version: int) -> None:
    """Not an event: the format is the file's, not the campaign's history, and is not
    compared with a fold of the log (integrity.NOT_FOLDED)."""
    conn.execute(
        "INSERT OR REPLACE INTO meta (key, value) VALUES ('format_version', ?)",
        (canonical(version),),
    )


def _format_1_to_2(conn: sqlite3.Connection) -> None:
    """Format 2 only starts recording the format: the log and tables are as in format 1."""


# format N -> the step that makes it format N + 1 (each inside the migration's transaction)
MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {1: _format_1_to_2}
