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
  against a fold of the log into a scratch database, row by row.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, replace
from typing import Any

from loopctl.errors import TamperedError
from loopctl.spec import Spec, parse_spec, spec_hash
from loopctl.store import SCHEMA, Store, project, sqlite_failure

DERIVED = {  # table -> key column(s) used to name a differing row
    "trials": ("id",),
    "observations": ("trial_id", "metric"),
    "proposals": ("id",),
    "drivers": ("name",),
    "meta": ("key",),
}
META_KEYS = {  # event kind -> the meta rows it writes, to name the event behind a bad row
    "campaign_created": ("format", "spec", "spec_hash", "versions", "source", "created_at"),
    "controller_started": ("controller",),
    "controller_stopped": ("controller",),
    "campaign_finished": ("finished",),
    "run_settings": ("run_settings",),
    "campaign_paused": ("paused",),
    "campaign_unpaused": ("paused",),
}
SPEC_CHANGED = "the stored campaign spec does not match its hash"


@dataclass(frozen=True)
class Verdict:
    """What the check found; ``problems`` are ``{check, event, message}``, first bad first."""

    chain: str
    problems: list[dict[str, Any]]

    @property
    def ok(self) -> bool:
        return not self.problems


def check(store: Store) -> Verdict:
    try:
        with store.snapshot():
            ok, bad_seq, chain_msg = store.verify_chain()
            if not ok:  # a fold of a broken log proves nothing more
                problems = [{"check": "hash chain", "event": bad_seq, "message": chain_msg}]
            else:
                problems = _spec_problems(store) + _derived_problems(store)
    except sqlite3.Error as exc:  # this reads every row: a disk failing now is met here
        raise sqlite_failure(store.path, exc) from None
    problems.sort(key=lambda p: (p["event"] is None, p["event"] or 0))
    return Verdict(chain_msg, problems)


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
    spec = parse_spec(raw, source=store.meta("source") or f"{store.path} (stored spec)")
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
    scratch = sqlite3.connect(":memory:")
    scratch.executescript(SCHEMA)
    last_event: dict[tuple[str, str], int] = {}  # (table, first key) -> last event shaping it
    for ev in store.events():
        try:
            project(scratch, ev)
        except (KeyError, TypeError, ValueError, sqlite3.Error) as exc:
            scratch.close()
            return [
                {
                    "check": "replay of events",
                    "event": ev.seq,
                    "message": f"event {ev.seq} ({ev.kind}) cannot be applied: {exc!r}",
                }
            ]
        if ev.trial_id:
            last_event["trials", ev.trial_id] = last_event["observations", ev.trial_id] = ev.seq
        elif ev.kind == "proposal_made":
            last_event["proposals", ev.payload["id"]] = ev.seq
        elif ev.kind.startswith("driver_"):
            last_event["drivers", ev.payload["name"]] = ev.seq
        for meta_key in META_KEYS.get(ev.kind, ()):
            last_event["meta", meta_key] = ev.seq
    problems = []
    for table, key in DERIVED.items():
        expected = _rows(scratch, table, key)
        actual = _rows(store.conn, table, key)
        for k in sorted(set(expected) | set(actual), key=str):
            if expected.get(k) != actual.get(k):
                what = _difference(table, k, expected.get(k), actual.get(k))
                problems.append(
                    {
                        "check": f"table {table}",
                        "event": last_event.get((table, str(k[0]))),
                        "message": what,
                    }
                )
    scratch.close()
    return problems


def _rows(
    conn: sqlite3.Connection, table: str, key: tuple[str, ...]
) -> dict[tuple[Any, ...], dict[str, Any]]:
    cur = conn.execute(f"SELECT * FROM {table}")
    names = [c[0] for c in cur.description]
    out = {}
    for row in cur:
        d = dict(zip(names, row, strict=True))
        out[tuple(d[k] for k in key)] = d
    return out


def _difference(
    table: str, key: tuple[Any, ...], want: dict[str, Any] | None, got: dict[str, Any] | None
) -> str:
    name = "/".join(map(str, key))
    if got is None:
        return f"{table} row {name} is missing (the events create it)"
    if want is None:
        return f"{table} row {name} exists but no event creates it"
    c = next(c for c in want if want[c] != got.get(c))
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
