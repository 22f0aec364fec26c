"""A result is recorded only in the campaign it was measured for.

Trial ids repeat across campaigns (each has a T0001), so a driver holding campaign A's
result must not deliver it to campaign C started later on the same endpoint.
"""

from __future__ import annotations

import json
import signal
import sqlite3
from pathlib import Path

import pytest

from loopctl.audit import audit
from loopctl.spec import spec_hash
from loopctl.store import Store, canonical, event_hash
from tests.conftest import Procs, count, db_rows, scaled, wait_for
from tests.specs import branin, branin_fn
from tests.test_bad_messages import RawDriver, fingerprint

pytestmark = pytest.mark.slow

# scaled: with no retries, a driver lost only because this machine is busy (or a driver
# that is late for the grace period of a resumed controller) would abandon its trial
FAST = {"heartbeat_interval": 0.2, "heartbeat_timeout": scaled(1.5), "retries": 0}


def running_on(db: Path, driver: str) -> int:
    return count(db, "SELECT COUNT(*) FROM trials WHERE status='running' AND driver=?", driver)


def test_a_held_result_never_lands_in_another_campaign(
    tmp_path: Path, procs: Procs, ipc: str
) -> None:
    spec_a = branin(
        tmp_path,
        "a.yaml",
        seed=1,
        strategy={"method": "sobol"},
        budget={"trials": 3},
        execution={**FAST, "max_in_flight": 1},
    )
    spec_c = branin(
        tmp_path,
        "c.yaml",
        seed=2,
        strategy={"method": "sobol"},
        budget={"trials": 3},
        execution={**FAST, "max_in_flight": 2},
    )
    db_a, db_c = tmp_path / "a.db", tmp_path / "c.db"
    ctl_a = procs.controller(spec_a, db_a, ipc, log="a.log")
    stale = procs.driver(ipc, "stale1", "--latency", "1.5")
    wait_for(lambda: running_on(db_a, "stale1") == 1, 30, "a trial of A on stale1")
    ctl_a.send_signal(signal.SIGKILL)  # nobody acknowledges what stale1 is measuring
    procs.exit_code(ctl_a, 10)
    outbox = tmp_path / "stale1.outbox"
    wait_for(lambda: bool(list(outbox.rglob("*.json"))), 10, "A's result in stale1's outbox")
    (held_file,) = list(outbox.rglob("*.json"))
    held = json.loads(held_file.read_text())["body"]
    stale.send_signal(signal.SIGKILL)
    procs.exit_code(stale, 10)

    ctl_c = procs.controller(spec_c, db_c, ipc, log="c.log")
    procs.driver(ipc, "honest", "--latency", "2")
    wait_for(
        lambda: (
            running_on(db_c, "honest") >= 1
            and count(db_c, "SELECT COUNT(*) FROM trials WHERE id=? AND status='running'", "T0001")
            == 1
        ),
        30,
        "C's T0001 running on another driver",
    )
    procs.driver(ipc, "stale1", "--latency", "0.1")  # back, holding A's T0001 result
    assert procs.exit_code(ctl_c, 60) == 0, procs.log("c.log")

    # every value in C is C's own measurement of C's parameters
    rows = db_rows(
        db_c,
        "SELECT t.id, json_extract(parameters, '$.x1'), json_extract(parameters, '$.x2'), "
        "o.value FROM trials t JOIN observations o ON o.trial_id = t.id",
    )
    assert len(rows) == 3
    for tid, x1, x2, y in rows:
        assert y == pytest.approx(branin_fn(x1, x2)), (tid, y, held)
    # A's result is still waiting for A, under A's campaign id, never rejected
    with Store.open(db_a, readonly=True) as s:
        a_id = s.campaign_id()
    assert held_file.exists() and held_file.parent.name == a_id
    assert held["campaign_id"] == a_id
    assert not list(outbox.rglob("rejected/*"))
    with Store.open(db_c, readonly=True) as s:
        assert audit(s)["ok"]

    # and when A comes back, stale1 (which C told to shut down) delivers it there; the
    # driver starts first, so that it is back within the resumed controller's grace period
    procs.driver(ipc, "stale1", "--latency", "0.1")
    ctl_a2 = procs.start("-v", "resume", str(db_a), "--bind", ipc, log="a2.log")
    assert procs.exit_code(ctl_a2, 60) == 0, procs.log("a2.log")
    (value,) = db_rows(
        db_a, "SELECT value FROM observations WHERE trial_id=? AND metric='y'", held["trial"]
    )[0]
    assert value == held["outcomes"]["y"]
    assert not held_file.exists()


def test_a_report_for_another_campaign_is_refused_and_names_both(
    tmp_path: Path, procs: Procs, ipc: str
) -> None:
    spec = branin(tmp_path, strategy={"method": "sobol"}, execution={"heartbeat_timeout": 60})
    db = tmp_path / "c.db"
    procs.serving(procs.controller(spec, db, ipc), db)
    d = RawDriver(ipc)
    try:
        d.send("HELLO", name="raw", kind="test", version="1", capacity=1)
        welcome = d.recv_type("WELCOME")
        d.send("READY")
        task = d.recv_type("TASK")
        assert task["campaign_id"] == welcome["campaign_id"]
        assert task["spec_hash"] == welcome["spec_hash"]
        before = fingerprint(db)
        other = "ab" * 16
        d.send(
            "RESULT",
            trial=task["trial"],
            outcomes={"y": -1000.0},
            campaign_id=other,
            spec_hash="cd" * 32,
        )
        err = d.recv_type("ERROR")
        assert err["code"] == "wrong_campaign", err
        assert other in err["message"] and welcome["campaign_id"] in err["message"]
        assert fingerprint(db) == before
        d.send("RESULT", trial=task["trial"], outcomes={"y": 1.0})  # its own campaign's
        assert d.recv_type("ACK")["trial"] == task["trial"]
    finally:
        d.close()
    assert "belongs to campaign" in procs.log("controller.log")


def test_campaign_id_made_at_creation_or_derived_for_old_databases(tmp_path: Path) -> None:
    raw = {"name": "x"}  # with its true hash: audit checks the stored spec against it
    new = Store.create(tmp_path / "new.db", raw, spec_hash(raw), {})
    cid = new.campaign_id()
    new.close()
    with Store.open(tmp_path / "new.db", readonly=True) as s:
        assert s.campaign_id() == cid and len(cid) == 32
        assert s.meta("campaign_id") == cid and audit(s)["ok"]
    # a database written before campaign ids existed: no id in its genesis event
    old = Store.create(tmp_path / "old.db", raw, spec_hash(raw), {})
    old.close()
    conn = sqlite3.connect(tmp_path / "old.db")
    payload = json.loads(conn.execute("SELECT payload FROM events WHERE seq=1").fetchone()[0])
    del payload["campaign_id"]
    t = conn.execute("SELECT time FROM events WHERE seq=1").fetchone()[0]
    text = canonical(payload)
    h = event_hash("0" * 64, 1, t, "campaign_created", None, text)
    conn.execute("UPDATE events SET payload=?, hash=? WHERE seq=1", (text, h))
    conn.execute("DELETE FROM meta WHERE key='campaign_id'")
    conn.commit()
    conn.close()
    with Store.open(tmp_path / "old.db", readonly=True) as s:
        assert audit(s)["ok"]  # the derivation writes nothing
        assert s.campaign_id() == h[:32]
    with Store.open(tmp_path / "old.db", readonly=True) as s:
        assert s.campaign_id() == h[:32]  # the same every time
