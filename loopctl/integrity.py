"""Is a campaign database still as loopctl wrote it? One check for every command that reads.

`audit` prints every problem this check finds; `status`, `export` and `report` refuse a
database with any, naming the first. They used to check different things (`audit` the
hash chain and the tables, the others only the spec against its hash, and that through a
re-parse that could differ in the last digit), so the same file could be called edited by
one command and intact by another -- and a false alarm teaches users to ignore the real one.

Three checks, all on one snapshot of the database so that a controller writing meanwhile
cannot make them disagree with each other:

* the hash chain over every event (the log is the truth and carries its own proof);
* the stored campaign spec against the hash recorded beside it, hashing the stored text
  itself: a spec parsed again is only for building objects;
* the derived tables (``trials``, ``observations``, ``proposals``, ``drivers``, ``meta``)
  against a fold of the log into a scratch database, row by row -- unless a verified
  checkpoint (:mod:`loopctl.verified`) shows that neither the log nor the tables changed
  since a full check proved them consistent: then that check's verdict stands, and the
  chain's recomputation and the fold (over a second for 34,000 events) give way to
  digests of the events and of the tables.

A problem names the first event whose effect no longer matches: for a differing value, the
event that set that column, not merely the last event to touch its row (a trial's edited
parameters were blamed on its result, events later). The chain alone cannot say which of
two events was edited when it breaks between them: an edit whose own hash was recomputed
leaves only the *next* event failing. The tables can, being written in the same transaction
as each original event, so they are consulted then too.
"""

from __future__ import annotations

import hashlib
import json
import marshal
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from loopctl import verified
from loopctl.errors import TamperedError
from loopctl.events import project
from loopctl.spec import Spec, parse_spec, spec_hash
from loopctl.store import GENESIS, SCHEMA, Store, sqlite_failure

DERIVED = {  # table -> key column(s) used to name a differing row
    "trials": ("id",),
    "observations": ("trial_id", "metric"),
    "proposals": ("id",),
    "drivers": ("name",),
    "meta": ("key",),
}
SPEC_CHANGED = "the stored campaign spec does not match its hash"
# meta rows that are the file's, not folded from the log: the database's format, which a
# migration sets (store.MIGRATIONS) without an event
NOT_FOLDED = {"meta": ("key", ("format_version",))}


@dataclass(frozen=True)
class Verdict:
    """What the check found; ``problems`` are ``{check, event, message}``, first bad first."""

    chain: str
    problems: list[dict[str, Any]]
    tables: str = ""  # how the tables were found to match the log

    @property
    def ok(self) -> bool:
        return not self.problems


def check(store: Store, *, full: bool = False, record: bool = True) -> Verdict:
    """The whole check, or, when a verified checkpoint (:mod:`loopctl.verified`) shows that
    neither the log nor the tables changed since a full check passed, its result again.
    ``full``: check in full even so. ``record``: after a full check that passed, keep a
    checkpoint, if the database can be written without waiting."""
    seen: verified.Point | None = None
    try:
        with store.snapshot():
            found = verified.find(store.conn)
            events, head = _head(store)
            if not full and _holds(store, found, events, head):
                at = _checkpoint(found)
                chain_msg = f"{events} events verified (unchanged since checked in full, {at})"
                problems = _spec_problems(store)
                tables = f"unchanged since checked in full ({at})"
            else:
                ok, bad_seq, chain_msg = store.verify_chain()
                if ok:
                    problems = _spec_problems(store) + _derived_problems(store)
                    tables = "folded from the log and compared row by row" + _why_full(
                        found, full, events, head
                    )
                    if not problems:
                        seen = verified.Point(
                            int(events),
                            str(head),
                            log_digest(store.conn),
                            tables_digest(store.conn),
                        )
                else:
                    problems, chain_msg = _chain_problems(store, bad_seq, chain_msg)
                    tables = "not all compared: the hash chain is broken"
    except sqlite3.Error as exc:  # this reads every row: a disk failing now is met here
        raise sqlite_failure(store.path, exc) from None
    problems.sort(key=lambda p: (p["event"] is None, p["event"] or 0))
    if seen is not None and record:
        verified.record(store.path, seen)
    return Verdict(chain_msg, problems, tables)


def _head(store: Store) -> tuple[Any, Any]:
    """(highest event number, its hash): once the chain verifies, the number of events
    (numbered 1..n without a gap) and the hash that commits to all of them."""
    row = store.conn.execute("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1").fetchone()
    return (0, GENESIS) if row is None else (row[0], row[1])


def _holds(store: Store, found: verified.Found, events: Any, head: Any) -> bool:
    """Are the log and the tables, to the byte, what a full check found consistent? Then
    that check's verdict stands: the chain verified over these very events, the fold of
    them made these very rows. Compared by digest (half the time of recomputing every
    event's hash; a tenth of the fold), the cheap comparisons first."""
    point = found.point
    if point is None or (point.events, point.head) != (events, head):
        return False
    return log_digest(store.conn) == point.log and tables_digest(store.conn) == point.tables


def _checkpoint(found: verified.Found) -> str:
    assert found.point is not None
    when = "" if found.at is None else f" at {_utc(found.at)}"
    return f"event {found.point.events}{when}"


def _why_full(found: verified.Found, full: bool, events: int, head: str) -> str:
    if full:
        return " (asked for in full)"
    if found.forged:
        return (
            " (the verified checkpoint for your key does not verify: it was written "
            "without the key, so it was not used)"
        )
    if found.stale:
        return " (the last full check was made by another loopctl version)"
    if found.point is None:
        return " (no verified checkpoint for your key yet)"
    if (found.point.events, found.point.head) == (events, head):
        return f" (the database changed since the full check of {_checkpoint(found)})"
    if found.point.events < events:
        return f" ({events - found.point.events} events since the last full check)"
    return " (the log is not the one of the last full check)"


def _utc(t: float) -> str:
    try:  # the time is the checkpoint's, unsigned (said, never relied on): anything goes
        return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (OverflowError, OSError, TypeError, ValueError):
        return f"an unreadable time ({t!r:.40})"


def log_digest(conn: sqlite3.Connection) -> str:
    """sha256 of every event row, every column, in order (see :func:`_marshalled`)."""
    h = hashlib.sha256()
    _marshalled(h, conn.execute("SELECT * FROM events ORDER BY seq"), "events")
    return h.hexdigest()


def tables_digest(conn: sqlite3.Connection) -> str:
    """sha256 of what the comparison with the fold compares: each derived table's
    definition, its columns and its rows in key order (the rows :func:`_differences`
    reads). A table that cannot be read gives a digest of its own."""
    h = hashlib.sha256()
    for table, key in DERIVED.items():
        try:
            made = conn.execute(
                "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
            ).fetchone()
            cur = conn.execute(f"SELECT * FROM {table} {_skip(table)} ORDER BY {', '.join(key)}")
        except sqlite3.Error as exc:
            h.update(f"{table}: {exc}".encode())
            continue
        _marshalled(h, cur, table, made)
    return h.hexdigest()


def _marshalled(h: Any, cur: sqlite3.Cursor, *head: Any) -> None:
    """Feed ``head``, the column names and every row of ``cur`` to the hash ``h``, in
    marshal's version 2 (no references between objects): every value goes in with its type
    and exact bits (a float's eight bytes, not a rounded text), and the bytes depend on the
    values only, never on which objects hold them. Equal rows give equal digests; a changed
    value, row or column, another. In C but for one call per 4,096 rows: under half the
    time of recomputing the chain; and marshal, unlike pickle, costs no import."""
    h.update(marshal.dumps((*head, [c[0] for c in cur.description]), 2))
    while rows := cur.fetchmany(4096):
        h.update(marshal.dumps(rows, 2))


def _skip(table: str) -> str:
    if table not in NOT_FOLDED:
        return ""
    column, values = NOT_FOLDED[table]
    return f"WHERE {column} NOT IN ({', '.join(repr(v) for v in values)})"


def _chain_problems(
    store: Store, bad: int | None, message: str
) -> tuple[list[dict[str, Any]], str]:
    """Where the chain breaks, and which of the two events beside the break was edited;
    returns the problems and what to say of the chain.

    Event ``bad`` failing its hash means either it was changed, or event ``bad - 1`` was
    changed and given the hash of its new content (``bad``'s hash was computed from the old
    one). The tables settle it when the edit changed what they hold: the fold of the log
    then differs from them at the edited event. Past the break the fold proves nothing, so
    only differences at those two events are reported, and ``bad - 1`` is blamed only when
    the evidence is against it alone: an edit at ``bad`` that took away what it set can
    make an earlier event look responsible for the value left behind."""
    row = store.conn.execute("SELECT kind FROM events WHERE seq = ?", (bad,)).fetchone()
    chain = {"check": "hash chain", "event": bad, "message": message}
    if row is None or bad is None or bad == 1:  # a gap, or nothing before it to suspect
        return [chain], message
    found = _spec_problems(store) + _derived_problems(store)
    at_bad = [p for p in found if p["event"] == bad]
    before = [p for p in found if p["event"] == bad - 1]
    if at_bad:
        return [chain, *at_bad], message
    if before:
        said = (
            f"event {bad} ({row[0]}) does not chain to event {bad - 1} as it is now: event "
            f"{bad - 1} was changed and given a new hash (event {bad}'s was computed from the "
            "old one)"
        )
    else:
        said = (
            f"{message}: event {bad} was changed, or event {bad - 1} was changed and given a "
            "new hash (neither edit changed what the tables hold, so they cannot tell which)"
        )
    return [*before, dict(chain, message=said)], said


def verified_spec(store: Store) -> Spec:
    """The campaign's spec, once the whole database has passed :func:`check`."""
    verdict = check(store)
    if not verdict.ok:
        raise _refusal(store, verdict.problems[0], len(verdict.problems))
    return read_spec(store)


def stored_spec(store: Store) -> Spec:
    """The campaign's spec, checked against its hash only: for commands that write (resume,
    import, operator commands), which do not fold the whole log again before starting."""
    problems = _spec_problems(store)
    if problems:
        raise _refusal(store, problems[0], 1)
    return read_spec(store)


def read_spec(store: Store) -> Spec:
    """Objects built from the stored form, which stays the spec's ``raw`` (and its hash)."""
    raw = store.meta("spec")
    spec = parse_spec(
        raw, source=store.meta("source") or f"{store.path} (stored spec)", read_files=False
    )
    return replace(spec, raw=raw)


def _refusal(store: Store, first: dict[str, Any], n: int) -> TamperedError:
    where = f" (first bad: event {first['event']})" if first["event"] is not None else ""
    more = f"; {n - 1} more problem{'s' if n > 2 else ''}" if n > 1 else ""
    return TamperedError(
        f"{store.path}: changed outside loopctl: {first['message']}{where}{more}. "
        f"`loopctl audit {store.path}` shows what and where"
    )


def _spec_problems(store: Store) -> list[dict[str, Any]]:
    if spec_hash(store.meta("spec")) == store.meta("spec_hash"):
        return []
    row = store.conn.execute("SELECT MIN(seq) FROM events WHERE kind = 'campaign_created'")
    return [{"check": "campaign spec", "event": row.fetchone()[0], "message": SPEC_CHANGED}]


def _derived_problems(store: Store) -> list[dict[str, Any]]:
    scratch, failed = _fold(store, track=False)
    if failed or not _differences(scratch, store):
        scratch.close()
        return failed
    # only now fold again, recording who set what: it would double the time of every check
    # of an intact database, the usual case, for an answer only a failed one needs
    scratch.close()
    scratch, _ = _fold(store, track=True)
    shaped = {
        (table, tuple(json.loads(key)), column): seq
        for table, key, column, seq in scratch.execute("SELECT * FROM shaped")
    }
    problems = []
    for table, k, want, got in _differences(scratch, store):
        if want is None:  # an event deleting it, if one did
            event, column = shaped.get((table, k, "-")), None
        elif got is None:  # the event that made the row
            event, column = shaped.get((table, k, "*")), None
        else:  # of the values that differ, the one set first, and the event that set it
            differing = [c for c in want if want[c] != got.get(c)]
            column = min(differing, key=lambda c: _set_by(shaped, table, k, c) or 0)
            event = _set_by(shaped, table, k, column)
        problems.append(
            {
                "check": f"table {table}",
                "event": event,
                "message": _difference(table, k, want, got, column),
            }
        )
    scratch.close()
    return problems


def _fold(store: Store, *, track: bool) -> tuple[sqlite3.Connection, list[dict[str, Any]]]:
    """The log folded into a scratch database; the problem if an event cannot be applied."""
    scratch = sqlite3.connect(":memory:")
    scratch.executescript(SCHEMA)
    if track:
        _track_shaping(scratch)
    for ev in store.events():
        if track:
            scratch.execute("UPDATE shaping_now SET seq = ?", (ev.seq,))
        try:
            project(scratch, ev)
        except (KeyError, TypeError, ValueError, sqlite3.Error) as exc:
            return scratch, [
                {
                    "check": "replay of events",
                    "event": ev.seq,
                    "message": f"event {ev.seq} ({ev.kind}) cannot be applied: {exc!r}",
                }
            ]
    return scratch, []


Row = dict[str, Any]
Difference = tuple[str, tuple[Any, ...], Row | None, Row | None]


def _differences(scratch: sqlite3.Connection, store: Store) -> list[Difference]:
    """(table, key, row the events make, row the database holds) wherever they differ.

    Both sides are read in key order and compared as they come, so a check holds two
    rows at a time rather than two copies of every table (100,000 imported trials
    took 330 MB that way). Rows are compared as tuples of the same columns, named only
    where they differ: a dict per row on each side was about a third of the comparison."""
    out: list[Difference] = []
    for table, key in DERIVED.items():
        columns = _columns(scratch, table)
        if sorted(_columns(store.conn, table)) != sorted(columns):  # not the same table:
            columns = []  # each side as it is, every row then differing by its columns
        expected = _rows(scratch, table, key, columns)
        actual = _rows(store.conn, table, key, columns)

        def named(row: Any, columns: list[str] = columns) -> Row:
            return dict(zip(columns, row, strict=True)) if columns else row

        want, got = next(expected, None), next(actual, None)
        while want is not None or got is not None:
            if want is not None and (got is None or want[2] < got[2]):
                out.append((table, want[0], named(want[1]), None))
                want = next(expected, None)
            elif got is not None and (want is None or got[2] < want[2]):
                out.append((table, got[0], None, named(got[1])))
                got = next(actual, None)
            else:
                assert want is not None and got is not None  # the same key on both sides
                if want[1] != got[1]:
                    out.append((table, want[0], named(want[1]), named(got[1])))
                want, got = next(expected, None), next(actual, None)
    return out


def _set_by(
    shaped: dict[tuple[str, tuple[Any, ...], str], int], table: str, key: tuple[Any, ...], c: str
) -> int | None:
    return shaped.get((table, key, c), shaped.get((table, key, "*")))


def _track_shaping(scratch: sqlite3.Connection) -> None:
    """Triggers in the scratch fold that record which event last set each value.

    ``shaped`` holds, per row, ``*``: the event that inserted it (its values unless set
    later), one entry per column an event changed afterwards, and ``-``: the event that
    deleted it. Recorded as the fold runs, since what a row looked like in between is gone
    by the time it is compared."""
    scratch.executescript(
        "CREATE TABLE shaping_now (seq INTEGER); INSERT INTO shaping_now VALUES (0);"
        "CREATE TABLE shaped (tbl TEXT, key TEXT, col TEXT, seq INTEGER, "
        "PRIMARY KEY (tbl, key, col));"
    )
    now = "(SELECT seq FROM shaping_now)"
    for table, key in DERIVED.items():
        columns = [r[1] for r in scratch.execute(f"PRAGMA table_info({table})")]

        def ident(row: str, table: str = table, key: tuple[str, ...] = key) -> str:
            return f"'{table}', json_array({', '.join(f'{row}.{k}' for k in key)})"

        def forget(row: str, table: str = table, key: tuple[str, ...] = key) -> str:
            keys = ", ".join(f"{row}.{k}" for k in key)
            return f"DELETE FROM shaped WHERE tbl = '{table}' AND key = json_array({keys});"

        changed = "".join(
            f"INSERT OR REPLACE INTO shaped SELECT {ident('NEW')}, '{c}', {now} "
            f"WHERE NEW.{c} IS NOT OLD.{c};"
            for c in columns
            if c not in key
        )
        scratch.executescript(
            f"CREATE TRIGGER {table}_made AFTER INSERT ON {table} BEGIN {forget('NEW')} "
            f"INSERT INTO shaped VALUES ({ident('NEW')}, '*', {now}); END;"
            f"CREATE TRIGGER {table}_set AFTER UPDATE ON {table} BEGIN {changed} END;"
            f"CREATE TRIGGER {table}_gone AFTER DELETE ON {table} BEGIN {forget('OLD')} "
            f"INSERT INTO shaped VALUES ({ident('OLD')}, '-', {now}); END;"
        )


def _order(key: tuple[Any, ...]) -> tuple[tuple[int, Any], ...]:
    """SQLite's order of values (NULL, numbers, text, blobs), which a tampered table may
    mix in a key column where Python would refuse to compare them."""
    rank = {type(None): 0, int: 1, float: 1, str: 2, bytes: 3}
    return tuple((rank[type(v)], v if v is not None else 0) for v in key)


def _columns(conn: sqlite3.Connection, table: str) -> list[str]:
    return [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]


def _rows(
    conn: sqlite3.Connection, table: str, key: tuple[str, ...], columns: list[str]
) -> Iterator[tuple[tuple[Any, ...], Any, tuple[tuple[int, Any], ...]]]:
    """(key, row, the key's place in SQLite's order) in key order: SQLite's BINARY order of
    UTF-8 text is Python's order of the same strings, so the two sides of
    :func:`_differences` merge. The place is worked out once per row, not per comparison.

    With ``columns``, a row is the tuple of their values, both sides naming the same
    columns in the same order; without, a dict of every column the table has."""
    skip = _skip(table)
    picked = ", ".join(columns) or "*"
    cur = conn.execute(f"SELECT {picked} FROM {table} {skip} ORDER BY {', '.join(key)}")
    names = [c[0] for c in cur.description]
    at = [names.index(c) for c in key]
    if not columns:
        for row in cur:
            k = tuple(row[i] for i in at)
            yield k, dict(zip(names, row, strict=True)), _order(k)
        return
    for row in cur:
        k = tuple(row[i] for i in at)
        yield k, row, _order(k)


def _difference(
    table: str,
    key: tuple[Any, ...],
    want: dict[str, Any] | None,
    got: dict[str, Any] | None,
    c: str | None,
) -> str:
    name = "/".join(map(str, key))
    if got is None:
        return f"{table} row {name} is missing (the events create it)"
    if want is None or c is None:
        return f"{table} row {name} exists but no event creates it"
    where, is_, should = _json_difference(want[c], got.get(c))
    return f"{table} row {name}: {c}{where} is {_short(is_)} but the events say {_short(should)}"


def _json_difference(want: Any, got: Any) -> tuple[str, Any, Any]:
    """(path, found, expected) of the first difference inside JSON columns (a spec, a
    trial's parameters), so a changed bound is named rather than printed with the rest."""
    try:
        a, b = json.loads(want), json.loads(got)
    except (TypeError, ValueError):
        return "", got, want
    path = ""
    while a != b:
        if isinstance(a, dict) and isinstance(b, dict) and a.keys() == b.keys():
            k = next(k for k in sorted(a) if a[k] != b[k])
            path, a, b = f"{path}.{k}", a[k], b[k]
        elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
            i = next(i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y)
            path, a, b = f"{path}[{i}]", a[i], b[i]
        else:
            break
    return (f" at {path.lstrip('.')}" if path else ""), b, a


def _short(v: Any, limit: int = 80) -> str:
    text = repr(v)
    return text if len(text) <= limit else text[: limit - 3] + "..."
