"""The catalogue of event kinds: one meaning per kind, checked payloads, the DataView that
starts from the tables, and the database's format with its migration."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from loopctl import Campaign, ledger, lifecycle
from loopctl.audit import audit
from loopctl.events import CATALOGUE, Event, EventKind, PayloadError, check_payload, parse
from loopctl.integrity import read_spec
from loopctl.space import Space
from loopctl.store import FORMAT_VERSION, SCHEMA, Store, project
from loopctl.strategies.base import CampaignData
from tests.specs import branin


def _y(p: dict[str, float]) -> float:
    return p["x1"] + p["x2"]


def every_kind_of_trial(tmp_path: Path) -> Path:
    """A campaign with completed, failed, pending (running and in doubt), rejected,
    amended, re-queued and imported trials, recorded through the library's own paths."""
    db = tmp_path / "c.db"
    with Campaign.create(branin(tmp_path, strategy={"method": "sobol"}), db) as c:
        with c.store.batch() as b:
            ledger.record_imports(
                b,
                c.spec,
                c.space,
                [{"x1": 1.0, "x2": 2.0, "y": 3.5}, {"x1": -2.0, "x2": 7.0, "y": 9.0, "y_sem": 0.5}],
                "past.csv",
            )
        done = c.ask(3)
        for t in done:
            c.tell(t.id, {"y": _y(t.parameters)})
        c.amend(done[0].id, {"y": 42.0}, "mis-typed", operator="ana")
        (bad,) = c.ask(1)
        c.fail(bad.id, "sample cracked")
        running = c.ask(2)
        (again,) = c.ask(1)
        c.fail(again.id, "driver hiccup", retryable=True)  # back to proposed
        with c.store.batch() as b:
            ledger.record_in_doubt(b, running[0].id, 1e12)
            tid = ledger.record_suggestion(b, c.spec, c.space, {"x1": 0.5, "x2": 0.5}, "bo")
            ledger.record_approval(b, tid, False, "bo", "too close to the last one")
            kept = ledger.record_suggestion(b, c.spec, c.space, {"x1": 5.0, "x2": 5.0}, "bo")
            ledger.record_approval(b, kept, True, "bo")
    return db


def full_fold(current: ledger.DataView) -> CampaignData:
    """The data as the fold of every event from the first gives it (the old way), for the
    same spec and space as the view ``current``."""
    view = ledger.DataView(current.store, current.spec, current.space)
    head = current.store.conn.execute("SELECT MAX(seq) FROM events").fetchone()[0]
    return view.refresh(until=head)


def test_view_from_tables_is_the_full_fold(tmp_path: Path) -> None:
    db = every_kind_of_trial(tmp_path)
    with Store.open(db) as store:
        spec = read_spec(store)
        view = ledger.DataView(store, spec, Space.for_spec(spec))
        quick, slow = view.refresh(), full_fold(view)
        assert quick == slow
        statuses = {s for s in view.seen.status.values()}
        assert statuses == {
            lifecycle.COMPLETED,
            lifecycle.FAILED,
            lifecycle.RUNNING,
            lifecycle.IN_DOUBT,
            lifecycle.PROPOSED,
            lifecycle.APPROVED,
            lifecycle.REJECTED,
        }
        assert len(quick.completed) == 5 and len(quick.failed) == 1 and len(quick.rejected) == 1
        assert 42.0 in {o.outcomes["y"][0] for o in quick.completed}  # the amended value
        assert {o.outcomes["y"] for o in quick.completed} >= {(3.5, None), (9.0, 0.5)}
        assert quick.proposal_index > 0 and quick.sobol_drawn > 0
        # the view then goes on folding only what is new, and still agrees
        c2 = Campaign(store, spec)  # the library writing while the view stays open
        (t,) = c2.ask(1)
        c2.tell(t.id, {"y": 1.0})
        later = view.refresh()
        assert later == full_fold(view) and later.as_of > quick.as_of


def test_replay_folds_the_past_from_the_log(tmp_path: Path) -> None:
    """refresh(until=...) gives the data of a past moment, which the tables cannot."""
    db = every_kind_of_trial(tmp_path)
    with Store.open(db, readonly=True) as store:
        spec = read_spec(store)
        view = ledger.DataView(store, spec, Space.for_spec(spec))
        made = [e for e in store.events() if e.kind == "proposal_made"]
        for ev in made:
            view.reset()
            past = view.refresh(until=ev.payload["data_seq"])
            assert past.as_of == ev.payload["data_seq"]
            assert past.proposal_index == ev.payload["number"] - 1
        view.reset()
        assert view.refresh(until=1).completed == ()


def test_unknown_kind_raises_when_written_and_read(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    with Campaign.create(branin(tmp_path), db) as c:
        n = c.store.conn.execute("SELECT COUNT(*) FROM events").fetchone()[0]
        unknown = pytest.raises(PayloadError, match="unknown event kind 'trial_teleported'")
        with unknown, c.store.batch() as b:
            b.add("trial_teleported", "T0001", {})
        assert c.store.conn.execute("SELECT COUNT(*) FROM events").fetchone()[0] == n
    scratch = sqlite3.connect(":memory:")
    scratch.executescript(SCHEMA)
    with pytest.raises(PayloadError, match="event 7: unknown event kind"):
        project(scratch, Event(7, 0.0, "trial_teleported", "T0001", {}, "0" * 64))


def test_payloads_are_checked_against_their_kind() -> None:
    ok = {"driver": "d1", "attempt": 1, "deadline": None}
    assert parse("trial_dispatched", ok).attempt == 1
    with pytest.raises(PayloadError, match="'attempt' is missing"):
        check_payload("trial_dispatched", {"driver": "d1"})
    with pytest.raises(PayloadError, match="'attempt' has the wrong type"):
        check_payload("trial_dispatched", {"driver": "d1", "attempt": "one"})
    with pytest.raises(PayloadError, match="'outcomes' has the wrong type"):
        check_payload("trial_completed", {"outcomes": {"y": {"value": "high"}}})
    # a key an older loopctl wrote is read, never written anew
    check_payload("trial_dispatched", dict(ok, host="lab-3"))
    with pytest.raises(PayloadError, match="unknown field"):
        check_payload("trial_dispatched", dict(ok, host="lab-3"), writing=True)


def test_one_entry_per_kind_and_the_lifecycle_reads_it() -> None:
    assert set(CATALOGUE) == set(EventKind)
    trial_steps = {k.value for k, e in CATALOGUE.items() if e.allowed_from is not None}
    assert set(lifecycle.TRANSITIONS) == trial_steps
    assert lifecycle.TRANSITIONS["trial_amended"] == frozenset({lifecycle.COMPLETED})
    with pytest.raises(Exception, match="cannot be dispatched"):
        lifecycle.check("trial_dispatched", "T0001", lifecycle.COMPLETED)


def test_a_tampered_payload_is_named_by_the_audit(tmp_path: Path) -> None:
    db = every_kind_of_trial(tmp_path)
    conn = sqlite3.connect(db)
    (seq,) = conn.execute("SELECT MIN(seq) FROM events WHERE kind = 'trial_dispatched'").fetchone()
    conn.execute(
        'UPDATE events SET payload = replace(payload, \'"attempt":1\', \'"attempt":"1"\') '
        "WHERE seq = ?",
        (seq,),
    )
    conn.commit()
    conn.close()
    with Store.open(db, readonly=True) as store:
        report = audit(store)
    assert not report["ok"]
    line = next(e for e in report["timeline"] if e["seq"] == seq)
    assert "does not fit" in line["event"]


def test_format_version_and_migration(tmp_path: Path) -> None:
    db = every_kind_of_trial(tmp_path)
    with Store.open(db, readonly=True) as store:
        assert store.format_version() == FORMAT_VERSION == 2
    # a database made before formats were recorded: format 1
    conn = sqlite3.connect(db)
    conn.execute("DELETE FROM meta WHERE key = 'format_version'")
    conn.commit()
    conn.close()
    with Store.open(db, readonly=True) as store:
        assert store.format_version() == 1
        assert audit(store)["ok"]
    with Store.open(db, readonly=True) as store:  # reading never migrates
        assert store.format_version() == 1
    with Store.open(db) as store:  # a writer does, under its lock
        assert store.format_version() == 2
        assert store.migrate() == []
        assert audit(store)["ok"]
    conn = sqlite3.connect(db)
    conn.execute("UPDATE meta SET value = '3' WHERE key = 'format_version'")
    conn.commit()
    conn.close()
    with pytest.raises(Exception, match="newer loopctl"):
        Store.open(db, readonly=True)
