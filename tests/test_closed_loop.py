"""The closed loop with real processes: controller and oracle drivers over tcp, real SQLite."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from loopctl import Campaign
from loopctl.store import Store, is_locked
from tests.conftest import TCP_ANY, Procs, count, db_rows, loopctl, scaled, wait_for
from tests.specs import branin, branin_fn

pytestmark = pytest.mark.slow


def completed(db: Path) -> int:
    return count(db, "SELECT COUNT(*) FROM trials WHERE status = 'completed'")


def test_three_drivers_complete_twenty_trials(tmp_path: Path, procs: Procs) -> None:
    db = tmp_path / "c.db"
    ctl = procs.controller(branin(tmp_path), db, TCP_ANY)
    ep = procs.endpoint(ctl)
    for i in range(3):  # one jittered, as simulated instruments are
        procs.driver(ep, f"d{i}", "--latency", "0.05..0.15" if i == 0 else "0.1")
    assert procs.exit_code(ctl, 120) == 0, procs.log("controller.log")
    assert db_rows(db, "SELECT status, COUNT(*) FROM trials GROUP BY status") == [("completed", 20)]
    assert db_rows(db, "SELECT COUNT(DISTINCT trial_id) FROM observations WHERE metric='y'") == [
        (20,)
    ]
    for x1, x2, y in db_rows(
        db,
        "SELECT json_extract(parameters, '$.x1'), "
        "json_extract(parameters, '$.x2'), o.value FROM trials t "
        "JOIN observations o ON o.trial_id = t.id",
    ):
        assert y == pytest.approx(branin_fn(x1, x2))  # the oracle set-up came in WELCOME
    drivers_used = {r[0] for r in db_rows(db, "SELECT DISTINCT driver FROM trials")}
    assert drivers_used == {"d0", "d1", "d2"}
    strategies = {r[0] for r in db_rows(db, "SELECT strategy FROM proposals")}
    assert strategies == {"sobol", "botorch"}  # real BO after the initial design
    with Store.open(db, readonly=True) as store:
        ok, _bad, msg = store.verify_chain()
    assert ok, msg
    for p in procs.procs[1:]:  # drivers exit 0 on SHUTDOWN
        assert procs.exit_code(p, 10) == 0
    st = json.loads(loopctl("status", str(db), "--json").stdout)
    assert st["trials"]["completed"] == 20 and st["budget"]["left"] == 0
    assert st["best"]["value"] == min(r[0] for r in db_rows(db, "SELECT value FROM observations"))
    with Campaign.open(db) as c:  # the notebook API reads what the controller wrote
        assert len(c.to_dataframe()) == 20
        c.set_budget(21)  # the budget is used: going on is a decision, and recorded
        (more,) = c.ask()
        c.tell(more.id, {"y": branin_fn(more.parameters["x1"], more.parameters["x2"])})
        assert c.store.verify_chain()[0]


def test_killed_driver_trial_is_redispatched(tmp_path: Path, procs: Procs) -> None:
    spec = branin(
        tmp_path,
        strategy={"method": "sobol"},
        budget={"trials": 8},
        # scaled: a driver lost only because this machine is busy would add attempts
        execution={"heartbeat_timeout": scaled(2), "heartbeat_interval": 0.5},
    )
    db = tmp_path / "k.db"
    ctl = procs.controller(spec, db, TCP_ANY)
    ep = procs.endpoint(ctl)
    victim = procs.driver(ep, "victim", "--latency", "1.5")
    wait_for(
        lambda: (
            count(db, "SELECT COUNT(*) FROM trials WHERE status='running' AND driver='victim'") == 1
        ),
        30,
        "the victim driver to hold a trial",
    )
    for name in ("a", "b"):
        procs.driver(ep, name, "--latency", "0.3")
    (held,) = db_rows(db, "SELECT id FROM trials WHERE status='running' AND driver='victim'")[0]
    victim.send_signal(signal.SIGKILL)
    assert procs.exit_code(ctl, 90) == 0, procs.log("controller.log")
    assert completed(db) == 8
    assert db_rows(db, "SELECT COUNT(*) FROM trials") == [(8,)]
    status, driver, attempts = db_rows(
        db, "SELECT status, driver, attempts FROM trials WHERE id = ?", held
    )[0]
    assert status == "completed" and driver in ("a", "b") and attempts == 2
    reasons = db_rows(
        db, "SELECT payload FROM events WHERE kind='trial_interrupted' AND trial_id = ?", held
    )
    assert len(reasons) == 1 and "silent" in str(reasons[0][0])


def test_sigterm_stops_cleanly_then_resume_reuses_the_driver(
    tmp_path: Path, procs: Procs, ipc: str
) -> None:
    spec = branin(
        tmp_path,
        strategy={"method": "sobol"},
        budget={"trials": 500},
        execution={"heartbeat_interval": 0.2, "heartbeat_timeout": 1.0},
    )
    db = tmp_path / "s.db"  # ipc: the resumed controller is at the same address
    ctl = procs.controller(spec, db, ipc)
    drv = procs.driver(ipc, "d", "--latency", "0.05")
    wait_for(lambda: completed(db) >= 5, 30, "five results")
    silent = procs.log("d.log").count("controller silent")
    ctl.send_signal(signal.SIGTERM)
    assert procs.exit_code(ctl, 20) == 0, procs.log("controller.log")
    kinds = [r[0] for r in db_rows(db, "SELECT kind FROM events ORDER BY seq DESC LIMIT 1")]
    assert kinds == ["controller_stopped"]
    with Store.open(db, readonly=True) as store:
        assert store.verify_chain()[0]
    st = json.loads(loopctl("status", str(db), "--json").stdout)
    assert st["controller"]["running"] is False and st["finished"] is None
    before = st["trials"]["completed"]
    wait_for(
        lambda: procs.log("d.log").count("controller silent") > silent,
        10,
        "the driver to notice the silence",
    )
    assert drv.poll() is None  # a stop is not the end: it keeps reconnecting for a resume
    again = procs.start(
        "-v", "resume", str(db), "--bind", ipc, "--trials", str(before + 5), log="resume.log"
    )
    assert procs.exit_code(again, 60) == 0, procs.log("resume.log")
    assert completed(db) == before + 5
    assert procs.exit_code(drv, 10) == 0  # SHUTDOWN at the end of the campaign
    with Store.open(db, readonly=True) as store:
        assert store.verify_chain()[0]


def test_resume_keeps_the_overrides_and_the_endpoint_of_the_start(
    tmp_path: Path, procs: Procs
) -> None:
    """`start --trials 6 --sync NORMAL` on a free port, killed twice: each plain `resume`
    goes on with 6 trials, NORMAL and the same port, where the driver left running (with
    a result in hand, maybe) calls back. Before, resume fell back to the file's 20 trials
    and a new port."""
    spec = branin(
        tmp_path,
        strategy={"method": "sobol"},
        budget={"trials": 20},
        execution={"heartbeat_interval": 0.2, "heartbeat_timeout": 1.5},
    )
    db = tmp_path / "o.db"
    ctl = procs.controller(spec, db, TCP_ANY, "--trials", "6", "--sync", "NORMAL")
    ep = procs.endpoint(ctl)
    drv = procs.driver(ep, "d", "--latency", "0.3")
    for kill in range(2):
        at_least = 2 * kill + 1
        wait_for(lambda: completed(db) >= at_least, 30, "a result")  # noqa: B023
        ctl.send_signal(signal.SIGKILL)
        procs.exit_code(ctl, 10)
        st = loopctl("status", str(db)).stdout
        assert "budget: " in st and " of 6 completed" in st, st
        assert "ended without stopping" in st, st
        ctl = procs.start("-v", "resume", str(db), log=f"resume{kill}.log")
        assert procs.endpoint(ctl) == ep
    assert procs.exit_code(ctl, 90) == 0, procs.log("resume1.log")
    assert procs.exit_code(drv, 20) == 0  # it found the campaign again, to its end
    assert completed(db) == 6
    with Store.open(db, readonly=True) as store:
        assert store.run_settings() == {"trials": 6, "endpoint": ep, "synchronous": "NORMAL"}
    assert count(db, "SELECT COUNT(*) FROM events WHERE kind = 'run_settings'") == 1
    assert loopctl("audit", str(db)).returncode == 0


def test_second_writer_is_refused_while_controller_runs(tmp_path: Path, procs: Procs) -> None:
    spec = branin(tmp_path, strategy={"method": "sobol"})
    db = tmp_path / "l.db"
    ctl = procs.controller(spec, db, TCP_ANY)
    procs.wait_for(lambda: is_locked(str(db)), 20, "the controller to hold its database", ctl)
    csv = tmp_path / "past.csv"
    csv.write_text("x1,x2,y\n1,2,30\n")
    r = loopctl("import", str(db), str(csv), check=False)
    assert r.returncode == 1
    assert "in use by another controller" in r.stderr and "pid" in r.stderr
    st = loopctl("status", str(db), "--json")  # reading is always allowed
    assert '"running": true' in st.stdout


def test_driver_that_cannot_evaluate_says_so_and_flags_override(
    tmp_path: Path, procs: Procs
) -> None:
    spec = branin(tmp_path, strategy={"method": "sobol"}, budget={"trials": 3})
    db = tmp_path / "o.db"
    ctl = procs.controller(spec, db, TCP_ANY)
    ep = procs.endpoint(ctl)
    bad = procs.driver(ep, "bad", "--function", "nosuch")
    assert procs.exit_code(bad, 30) == 2
    assert "cannot evaluate campaign 'branin': unknown function 'nosuch'" in procs.log("bad.log")
    assert db_rows(db, "SELECT COUNT(*) FROM events WHERE kind = 'trial_dispatched'") == [(0,)]
    procs.driver(ep, "sphere", "--function", "sphere")  # flags override the campaign file
    assert procs.exit_code(ctl, 60) == 0, procs.log("controller.log")
    for x1, x2, y in db_rows(
        db,
        "SELECT json_extract(parameters, '$.x1'), "
        "json_extract(parameters, '$.x2'), o.value FROM trials t "
        "JOIN observations o ON o.trial_id = t.id",
    ):
        assert y == pytest.approx(x1**2 + x2**2)


def test_finite_space_ends_when_used_up(tmp_path: Path, procs: Procs) -> None:
    spec = tmp_path / "tiny.yaml"
    spec.write_text(
        "name: tiny\nspace:\n  - {name: n, type: integer, bounds: [1, 3]}\n"
        "  - {name: m, type: integer, bounds: [1, 2]}\n"
        "objectives: [{name: y, goal: minimize}]\nbudget: {trials: 50}\nstrategy: sobol\n"
        "oracle: {kind: function, function: sphere}\n"
    )
    db = tmp_path / "t.db"
    ctl = procs.controller(spec, db, TCP_ANY)
    procs.driver(procs.endpoint(ctl), "d")
    assert procs.exit_code(ctl, 60) == 0, procs.log("controller.log")
    assert completed(db) == 6
    assert "space exhausted" in procs.log("controller.log")


def test_the_demo_says_which_composition_it_simulated(tmp_path: Path) -> None:
    """The demo's 32-atom cell holds fractions in steps of 1/32: the best composition is
    shown with the one computed, and every result records it (exported with the trial)."""
    import csv
    import io
    import re

    from loopctl.drivers.oracle_models import emt_cell, simulated

    db = tmp_path / "demo.db"
    out = loopctl("demo", "--db", str(db), "--trials", "3", "--spawn-drivers", "1").stdout
    rows = {
        r["trial_id"]: r for r in csv.DictReader(io.StringIO(loopctl("export", str(db)).stdout))
    }
    assert len(rows) == 3
    for row in rows.values():
        asked = {e: float(row[f"composition.{e}"]) for e in ("Cu", "Ag", "Au", "Pd", "Pt")}
        expected = simulated(emt_cell(asked))
        assert row["simulated_cell"] == expected["simulated_cell"]
        assert row["simulated_composition"] == expected["simulated_composition"]
        assert sum(map(int, re.findall(r"\d+", row["simulated_cell"]))) == 32
    best = re.search(r"\(trial (T\d+)\)", out)
    assert best, out
    assert f"simulated as {rows[best[1]]['simulated_cell']}" in out, out
