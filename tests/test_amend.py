"""A recorded result is never overwritten by a second `tell`; it is corrected by an audited
amendment that every reader, the strategy included, then sees."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from loopctl import Campaign
from loopctl.errors import TrialError, ValidationError
from tests.conftest import TCP_ANY, Procs, count, db_rows, loopctl
from tests.specs import branin


def small(tmp: Path) -> Path:
    db = tmp / "a.db"
    with Campaign.create(branin(tmp, strategy={"method": "sobol"}), db) as c:
        for i, t in enumerate(c.ask(3)):
            c.tell(t.id, {"y": float(i)})
    return db


def test_tell_and_fail_on_a_completed_trial_are_refused(tmp_path: Path) -> None:
    db = small(tmp_path)
    with Campaign.open(db) as c:
        c.tell("T0002", {"y": 1.0})  # the same value again: a harmless retry
        with pytest.raises(TrialError, match=r"already has a result.*amend"):
            c.tell("T0002", {"y": 5.0})
        with pytest.raises(ValidationError, match="unknown outcome 'z'"):
            c.tell("T0002", {"z": 1.0})
        with pytest.raises(ValidationError, match="finite"):
            c.tell("T0002", {"y": math.nan})
        with pytest.raises(TrialError, match="cannot fail"):
            c.fail("T0002", "oops")
    assert db_rows(db, "SELECT value FROM observations WHERE trial_id = 'T0002'") == [(1.0,)]


def test_amend_keeps_the_old_value_in_the_log_and_the_strategy_sees_the_new(
    tmp_path: Path,
) -> None:
    db = small(tmp_path)
    with Campaign.open(db) as c:
        with pytest.raises(ValidationError, match="give a reason"):
            c.amend("T0002", {"y": 7.5}, reason=" ")
        with pytest.raises(ValidationError, match="nothing changes"):
            c.amend("T0002", {"y": 1.0}, reason="same")
        with pytest.raises(TrialError, match="no trial 'T0009'"):
            c.amend("T0009", {"y": 1.0}, reason="unknown")
        c.ask(1)  # T0004, running
        with pytest.raises(TrialError, match="is running; it cannot be amended"):
            c.amend("T0004", {"y": 1.0}, reason="not measured yet")
        assert "y=1 -> y=7.5" in c.amend("T0002", {"y": 7.5}, reason="typo", operator="ann")
        data = c.view.refresh()
        seen = {o.trial_id: o.outcomes["y"][0] for o in data.completed}
        assert seen["T0002"] == 7.5  # what the next proposal is fitted to
    (payload,) = db_rows(db, "SELECT payload FROM events WHERE kind = 'trial_amended'")[0]
    p = json.loads(payload)
    assert p["previous"]["y"]["value"] == 1.0 and p["outcomes"]["y"]["value"] == 7.5
    assert p["operator"] == "ann" and p["reason"] == "typo"
    audit = loopctl("audit", str(db)).stdout
    assert audit.count("T0002") >= 2 and "OK" in audit  # both values in the log; chain intact
    export = loopctl("export", str(db), "--format", "csv").stdout
    assert "7.5" in export


@pytest.mark.slow
def test_amend_from_the_cli_reaches_a_running_controller(tmp_path: Path, procs: Procs) -> None:
    spec = branin(
        tmp_path,
        strategy={"method": "sobol"},
        budget={"trials": 12},
        execution={"max_in_flight": 1},
    )
    db = tmp_path / "r.db"
    ctl = procs.controller(spec, db, TCP_ANY)
    ep = procs.endpoint(ctl)
    procs.serving(ctl, db)
    bad = loopctl("amend", str(db), "T0001", "--set", "y=1", "--reason", "r", check=False)
    # not measured yet (proposed, or not even proposed before a driver came)
    assert bad.returncode != 0 and "T0001" in bad.stderr, bad.stderr
    procs.driver(ep, "d", "--latency", "0.5")
    procs.wait_for(
        lambda: count(db, "SELECT COUNT(*) FROM trials WHERE status='completed'") >= 1,
        30,
        "a result",
        ctl,
    )
    loopctl("pause", str(db))  # so that the campaign cannot end before the amendment
    r = loopctl("amend", str(db), "T0001", "--set", "y=-3.25", "--reason", "recalibrated")
    assert "amended T0001" in r.stdout and "controller not running" not in r.stdout
    loopctl("unpause", str(db))
    assert procs.exit_code(ctl, 60) == 0, procs.log("controller.log")
    assert db_rows(db, "SELECT value FROM observations WHERE trial_id = 'T0001'") == [(-3.25,)]
    assert count(db, "SELECT COUNT(*) FROM events WHERE kind = 'trial_amended'") == 1
    assert loopctl("audit", str(db), "--replay").returncode == 0
