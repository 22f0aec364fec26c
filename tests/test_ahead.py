"""Propose-ahead with real controller and driver processes: ready candidates are sent the
moment a driver frees up, every ready-made proposal replays, and a controller killed with
candidates ready loses and duplicates nothing."""

from __future__ import annotations

import itertools
import json
import signal
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Procs, count, db_rows, loopctl
from tests.specs import branin

pytestmark = pytest.mark.slow

READY = (
    "SELECT COUNT(*) FROM trials t JOIN proposals p ON p.id = t.proposal_id "
    "WHERE t.status = 'proposed' AND t.attempts = 0 AND p.strategy != 'sobol'"
)


def _spec(tmp: Path, trials: int, refresh_after: int, **execution: Any) -> Path:
    return branin(
        tmp,
        budget={"trials": trials},
        strategy={"method": "auto", "initial_trials": 3},
        execution={
            "max_in_flight": 2,
            "ahead": 2,
            "refresh_after": refresh_after,
            "heartbeat_interval": 0.5,
            "heartbeat_timeout": 30,
            **execution,
        },
    )


def _events(db: Path) -> list[tuple[int, str, str | None, dict[str, Any]]]:
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute("SELECT seq, kind, trial_id, payload FROM events ORDER BY seq")
        return [(s, k, t, json.loads(p)) for s, k, t, p in rows]
    finally:
        conn.close()


def _check_replay(db: Path) -> str:
    out = loopctl("audit", str(db), "--replay", timeout=300).stdout
    assert "DIFFERENT" not in out, out
    assert "skipped" not in out, out
    return out


def test_a_freed_driver_gets_a_ready_candidate_in_the_same_transaction(
    tmp_path: Path, procs: Procs, ipc: str
) -> None:
    """After the initial design, a driver's next task is one proposed before its result came
    (a ready candidate), sent in the transaction that records the result: the TASK does not
    wait for a proposal. Without ahead a model-made proposal would come in between. The
    evaluations take longer than a proposal, even on a loaded machine, so that the model
    can keep up: where it cannot, drivers wait for it with or without ahead."""
    db = tmp_path / "a.db"
    ctl = procs.controller(_spec(tmp_path, 12, 0), db, ipc)
    for i in range(2):
        procs.driver(ipc, f"d{i}", "--latency", "3.0")
    assert procs.exit_code(ctl, 240) == 0, procs.tail(ctl)
    evs = _events(db)
    strategy = {}  # trial -> the strategy of its proposal
    proposed_at = {}  # trial -> seq of its trial_proposed
    for seq, kind, tid, p in evs:
        if kind == "proposal_made":
            strategy.update(dict.fromkeys(p["trial_ids"], p["strategy"]))
        elif kind == "trial_proposed":
            proposed_at[tid] = seq
    model = min(s for s, k, _, p in evs if k == "proposal_made" and p["strategy"] != "sobol")
    at_once = waited = 0
    for (seq, kind, _, p), nxt in itertools.pairwise(evs):
        if kind != "trial_completed" or seq < model:
            continue
        # the next event of this batch: the freed driver's next task, if one was ready
        if nxt[1] == "trial_dispatched" and nxt[3]["driver"] == p["driver"]:
            assert proposed_at[nxt[2]] < seq  # proposed before the result arrived
            at_once += strategy[nxt[2]] != "sobol"
        else:
            waited += 1
    assert at_once >= 5, (at_once, waited)
    assert at_once > waited
    assert count(db, "SELECT COUNT(*) FROM trials WHERE status = 'completed'") == 12
    # ready candidates counted against the budget: none left over
    assert count(db, "SELECT COUNT(*) FROM trials WHERE status != 'completed'") == 0


def test_replay_reproduces_ready_made_and_replacing_proposals(
    tmp_path: Path, procs: Procs, ipc: str
) -> None:
    """refresh_after 1: every result makes the ready candidates stale, so proposals replace
    them; each replacing proposal names them, the ones no driver took are withdrawn
    (abandoned), and `audit --replay` recomputes every proposal, replacing ones too."""
    db = tmp_path / "r.db"
    ctl = procs.controller(_spec(tmp_path, 12, 1), db, ipc)
    # slower than a proposal: replacements land before the next result, and ready
    # candidates pay (policy.ahead_pays: a proposal under 3 s here). Unequal latencies:
    # drivers in lockstep each take a ready candidate at the same result, leaving none to
    # go stale (it happened once in a fresh-clone CI)
    for i, latency in enumerate(("6.0", "9.0")):
        procs.driver(ipc, f"d{i}", "--latency", latency)
    assert procs.exit_code(ctl, 240) == 0, procs.tail(ctl)
    evs = _events(db)
    replacing = [p for _, k, _, p in evs if k == "proposal_made" and p.get("replaces")]
    assert replacing, "no proposal replaced a stale candidate"
    withdrawn = {t for _, k, t, p in evs if k == "trial_abandoned"}
    assert withdrawn
    dispatched = {t for _, k, t, _ in evs if k == "trial_dispatched"}
    replaced = {t for p in replacing for t in p["replaces"]}
    assert withdrawn <= replaced
    assert not withdrawn & dispatched  # a withdrawn candidate never runs
    for _, k, _t, p in evs:
        if k == "trial_abandoned":
            assert p["reason"].startswith("withdrawn: a ready candidate"), p
    assert count(db, "SELECT COUNT(*) FROM trials WHERE status = 'completed'") == 12
    out = _check_replay(db)
    assert out.count(": same") == sum(k == "proposal_made" for _, k, _, _ in evs)


def test_controller_killed_with_candidates_ready_resumes_without_loss_or_duplicate(
    tmp_path: Path, procs: Procs, ipc: str
) -> None:
    db = tmp_path / "c.db"
    spec = _spec(tmp_path, 14, 4, retries=5)
    ctl = procs.controller(spec, db, ipc, log="ctl-0.log")
    drivers = [procs.driver(ipc, f"d{i}", "--latency", "3.0") for i in range(2)]
    procs.wait_for(lambda: count(db, READY) >= 1, 120, "a model-made ready candidate", ctl)
    ready = {t for (t,) in db_rows(db, READY.replace("COUNT(*)", "t.id"))}
    ctl.send_signal(signal.SIGKILL)
    procs.exit_code(ctl, 10)
    ready &= {t for (t,) in db_rows(db, "SELECT id FROM trials WHERE status = 'proposed'")}
    assert ready
    ctl = procs.start("-v", "resume", str(db), "--bind", ipc, log="ctl-1.log")
    assert procs.exit_code(ctl, 240) == 0, procs.log("ctl-1.log")
    for d in drivers:
        assert procs.exit_code(d, 30) == 0

    evs = _events(db)
    completed = [t for _, k, t, _ in evs if k == "trial_completed"]
    assert len(completed) == len(set(completed)) == 14  # nothing recorded twice
    status = dict(db_rows(db, "SELECT id, status FROM trials"))
    for tid in ready:  # each ready candidate ran after the resume, or was replaced
        assert status[tid] in ("completed", "abandoned"), (tid, status[tid])
    for _, k, _t, p in evs:
        if k == "trial_abandoned":
            assert p["reason"].startswith("withdrawn"), p
    assert set(status.values()) <= {"completed", "abandoned"}
    # every result a driver reported is in the database
    for i in range(2):
        assert not list((tmp_path / f"d{i}.outbox").rglob("*.json"))  # all acknowledged
    loopctl("audit", str(db))  # exits non-zero on a broken chain or inconsistent tables
    _check_replay(db)
