"""Several fidelities with real processes: routing by level, the cost budget, replay."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loopctl import Campaign
from tests.conftest import TCP_ANY, Procs, count, db_rows, loopctl
from tests.specs import branin, branin_fn

pytestmark = pytest.mark.slow

LEVELS = {"levels": [{"name": "lo", "cost": 1}, {"name": "hi", "cost": 5}], "target": "hi"}


def levels_and_drivers(db: Path) -> list[tuple[str, str | None, str | None]]:
    """(trial, its recorded fidelity, the driver that completed it)."""
    return db_rows(
        db,
        "SELECT t.id, json_extract(e.payload, '$.fidelity'), t.driver FROM trials t "
        "JOIN events e ON e.trial_id = t.id AND e.kind = 'trial_proposed' "
        "WHERE t.status = 'completed' ORDER BY t.number",
    )


def test_trials_go_only_to_drivers_serving_their_level(tmp_path: Path, procs: Procs) -> None:
    spec = branin(tmp_path, fidelities=LEVELS, budget={"trials": 9})
    db = tmp_path / "mf.db"
    ctl = procs.controller(spec, db, TCP_ANY)
    ep = procs.endpoint(ctl)
    procs.driver(ep, "cheap", "--fidelity", "lo", "--capacity", "2")
    procs.driver(ep, "costly", "--fidelity", "hi", "--latency", "0.05")
    assert procs.exit_code(ctl, 180) == 0, procs.log("controller.log")
    rows = levels_and_drivers(db)
    assert len(rows) == 9
    assert {level for _, level, _ in rows} == {"lo", "hi"}  # both levels were used
    for tid, level, driver in rows:
        assert driver == {"lo": "cheap", "hi": "costly"}.get(level or ""), (tid, level, driver)
    strategies = {r[0] for r in db_rows(db, "SELECT strategy FROM proposals")}
    assert "multifidelity" in strategies
    # the drivers' declarations are on record, and the audit tells the levels
    connected = [
        json.loads(p)
        for (p,) in db_rows(db, "SELECT payload FROM events WHERE kind = 'driver_connected'")
    ]
    assert {c["name"]: c["fidelities"] for c in connected} == {"cheap": ["lo"], "costly": ["hi"]}
    audit = loopctl("audit", str(db), "--replay", timeout=300).stdout
    assert "serves lo" in audit and "at fidelity hi" in audit
    mf = [line for line in audit.splitlines() if "multifidelity" in line and ": same (" in line]
    assert mf, audit  # the multi-fidelity proposals replay to the same candidates and levels
    assert "DIFFERENT" not in audit
    exported = json.loads(loopctl("export", str(db), "--format", "json").stdout)
    assert {r["trial_id"]: r["fidelity"] for r in exported} == {t: lv for t, lv, _ in rows}
    assert all(r["cost"] == {"lo": 1, "hi": 5}[r["fidelity"]] for r in exported)


def test_a_driver_declaring_an_unknown_level_is_refused(tmp_path: Path, procs: Procs) -> None:
    spec = branin(tmp_path, fidelities=LEVELS, budget={"trials": 2})
    db = tmp_path / "u.db"
    ctl = procs.controller(spec, db, TCP_ANY)
    ep = procs.endpoint(ctl)
    bad = procs.driver(ep, "typo", "--fidelity", "hii")
    assert procs.exit_code(bad, 60) == 2
    assert "no fidelity 'hii'" in procs.log("typo.log")
    assert count(db, "SELECT COUNT(*) FROM events WHERE kind = 'driver_connected'") == 0
    procs.driver(ep, "all")  # declares nothing: serves every level
    assert procs.exit_code(ctl, 120) == 0, procs.log("controller.log")


def test_the_cost_budget_is_never_exceeded(tmp_path: Path, procs: Procs) -> None:
    """Budget 23 with levels costing 1 and 5: the campaign ends when not even a cheap trial
    fits, so exactly 23 are spent, and no moment had more than 23 sent out."""
    spec = branin(
        tmp_path,
        fidelities=LEVELS,
        budget={"trials": 100, "cost": 23},
        strategy={"method": "auto", "initial_trials": 30},  # Sobol: quick proposals
    )
    db = tmp_path / "c.db"
    ctl = procs.controller(spec, db, TCP_ANY)
    ep = procs.endpoint(ctl)
    procs.driver(ep, "cheap", "--fidelity", "lo", "--capacity", "2")
    procs.driver(ep, "costly", "--fidelity", "hi")
    assert procs.exit_code(ctl, 120) == 0, procs.log("controller.log")
    cost = {"lo": 1, "hi": 5}
    sent = 0.0
    for kind, tid in db_rows(
        db,
        "SELECT kind, trial_id FROM events WHERE kind IN ('trial_dispatched', 'trial_released') "
        "ORDER BY seq",
    ):
        level = dict((t, lv) for t, lv, _ in levels_and_drivers(db)).get(tid)
        sent += cost[level or "hi"] * (1 if kind == "trial_dispatched" else -1)
        assert sent <= 23
    assert sent == 23
    (reason,) = db_rows(db, "SELECT value FROM meta WHERE key = 'finished'")[0]
    assert "cost budget: 23 of 23 spent" in reason
    status = loopctl("status", str(db)).stdout
    assert "cost: 23 of 23 spent; completed per fidelity: lo " in status
    assert "(best judged at hi)" in status


def test_a_measured_cost_counts_instead_of_the_declared_one(tmp_path: Path) -> None:
    spec = branin(tmp_path, fidelities=LEVELS, budget={"trials": 50, "cost": 12})
    with Campaign.create(spec, tmp_path / "m.db") as c:
        spent = 0.0
        while True:
            left = c.view.refresh().cost_left
            assert left is not None
            if left < 1:
                break
            (t,) = c.ask()
            assert t.fidelity in ("lo", "hi")
            measured = 0.5 if t.fidelity == "lo" else None  # the cheap level ran faster
            c.tell(t.id, {"y": branin_fn(t.parameters["x1"], t.parameters["x2"])}, cost=measured)
            spent += 0.5 if t.fidelity == "lo" else 5
        assert spent <= 12 and c.view.refresh().cost_left == pytest.approx(12 - spent)


def test_an_sdk_driver_learns_the_level_and_reports_what_it_cost(
    tmp_path: Path, procs: Procs
) -> None:
    spec = branin(tmp_path, fidelities=LEVELS, budget={"trials": 6})
    db = tmp_path / "s.db"
    ctl = procs.controller(spec, db, TCP_ANY)
    ep = procs.endpoint(ctl)
    procs.start(ep, str(tmp_path / "ob"), log="metered.log", module="tests.metered_driver")
    assert procs.exit_code(ctl, 120) == 0, procs.log("controller.log") + procs.log("metered.log")
    rows = db_rows(
        db,
        "SELECT json_extract(p.payload, '$.fidelity'), json_extract(c.payload, '$.cost'), "
        "json_extract(c.payload, '$.metadata.level_seen') FROM events p JOIN events c "
        "ON c.trial_id = p.trial_id AND c.kind = 'trial_completed' "
        "WHERE p.kind = 'trial_proposed'",
    )
    assert len(rows) == 6 and {r[0] for r in rows} == {"lo", "hi"}
    for level, cost, seen in rows:
        assert seen == level  # the TASK told the driver its level
        assert cost == (0.5 if level == "lo" else None)
    exported = json.loads(loopctl("export", str(db), "--format", "json").stdout)
    assert sorted(r["cost"] for r in exported) == sorted(
        0.5 if level == "lo" else 5 for level, _, _ in rows
    )
