"""`loopctl audit`: any edit of the database made behind loopctl's back is caught and located."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from loopctl import Campaign
from tests.conftest import loopctl
from tests.specs import branin


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "a.db"
    with Campaign.create(branin(tmp_path, strategy={"method": "sobol"}), path) as c:
        for t in c.ask(4):
            c.tell(t.id, {"y": t.parameters["x1"] ** 2})
        (t,) = c.ask()
        c.fail(t.id, "film did not form")
    return path


def completed_event(db: Path, trial: str) -> int:
    conn = sqlite3.connect(db)
    (seq,) = conn.execute(
        "SELECT seq FROM events WHERE kind = 'trial_completed' AND trial_id = ?", (trial,)
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
            "completed:T0003",
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
    if first_bad.startswith("completed:"):
        expected = completed_event(db, first_bad.split(":")[1])
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
    from tests.test_campaign_api import branin_fn

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
