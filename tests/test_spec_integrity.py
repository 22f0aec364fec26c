"""No honest campaign database is ever called edited, and every edited one is: `status`,
`export` and `audit` give the same verdict, because a false alarm teaches users to ignore
the real one."""

from __future__ import annotations

import csv
import itertools
import json
import random
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from loopctl import Campaign
from loopctl.cli import main
from loopctl.spec import load_spec, parse_spec, spec_hash
from loopctl.status import campaign_status
from tests.conftest import Procs, count, loopctl, scaled, wait_for
from tests.specs import branin

TRIALS = 4
ELEMENTS = ["Ni", "Fe", "Co", "Mn", "Ce", "La"]


def write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> Path:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def composition_grid(tmp: Path) -> Path:
    """Every six-element composition on a 0.1 grid, written as a person would ("0.3"), so
    that many rows (0.1 + 0.3 + 0.6, ...) do not sum to exactly 1 in floating point."""
    rows = []
    for tenths in itertools.product(range(11), repeat=len(ELEMENTS) - 1):
        if sum(tenths) <= 10:
            fr = [t / 10 for t in (*tenths, 10 - sum(tenths))]
            y = sum((x - 1 / 6) ** 2 for x in fr) + 0.3 * fr[0] * fr[1]
            rows.append([str(x) for x in fr] + [f"{y:.6f}"])
    return write_csv(tmp / "oer.csv", [*ELEMENTS, "overpotential"], rows)


def case_space(tmp: Path) -> dict[str, Any]:
    """range, log range, integer, choice and composition, looked up in a table."""
    rng = random.Random(0)
    rows = []
    for _ in range(30):
        cu = rng.choice([0.1, 0.2, 0.3, 0.4])
        ni = rng.choice([0.1, 0.3, 0.5])
        rows.append(
            [
                rng.uniform(-1, 2),
                10 ** rng.uniform(-5, -1),
                rng.randint(1, 6),
                rng.choice(["water", "ethanol", "3"]),
                cu,
                ni,
                round(1 - cu - ni, 10),
                rng.uniform(0, 1),
            ]
        )
    table = write_csv(tmp / "table.csv", ["x", "rate", "n", "solvent", "Cu", "Ni", "Pd", "y"], rows)
    return {
        "space": [
            {"name": "x", "type": "range", "bounds": [-1, 2]},
            {"name": "rate", "type": "range", "bounds": [1.0e-5, 0.1], "log": True},
            {"name": "n", "type": "integer", "bounds": [1, 6]},
            {"name": "solvent", "type": "choice", "values": ["water", "ethanol", 3]},
            {
                "name": "comp",
                "type": "composition",
                "elements": ["Cu", "Ni", "Pd"],
                "bounds": {"Cu": [0.1, 0.6], "Pd": [0.0, 0.8]},
            },
        ],
        "objectives": [{"name": "y", "goal": "minimize"}],
        "oracle": {"kind": "table", "table": str(table)},
    }


def case_composition_pool(tmp: Path) -> dict[str, Any]:
    """The campaign of the report: a composition pool read from a CSV on a 0.1 grid."""
    table = composition_grid(tmp)
    return {
        "space": [{"name": "comp", "type": "composition", "elements": ELEMENTS}],
        "objectives": [{"name": "overpotential", "goal": "minimize"}],
        "pool": {"file": table.name},
        "oracle": {"kind": "table", "table": table.name},
    }


def case_formula_pool(tmp: Path) -> dict[str, Any]:
    formulas = ["Fe2O3", "NiO", "CoO", "MnO2", "LaNiO3", "CeO2", "NiFe2O4", "La0.5Sr0.5CoO3"]
    rows = [[f, 0.1 * i] for i, f in enumerate(formulas)]
    table = write_csv(tmp / "formulas.csv", ["material", "gap"], rows)
    return {
        "space": [{"name": "material", "type": "formula"}],
        "objectives": [{"name": "gap", "goal": "maximize"}],
        "pool": {"file": table.name},
        "oracle": {"kind": "table", "table": table.name},
    }


def case_numeric_pool(tmp: Path) -> dict[str, Any]:
    rows = [[t, 0.3 * s, s, (t - 400) ** 2 / 1e4 + s] for t in (300, 350, 400) for s in (1, 2, 3)]
    table = write_csv(tmp / "numeric.csv", ["temperature", "time", "layers", "y"], rows)
    return {
        "space": [
            {"name": "temperature", "type": "range", "bounds": [300, 400]},
            {"name": "time", "type": "range", "bounds": [0.1, 1.0]},
            {"name": "layers", "type": "integer", "bounds": [1, 3]},
        ],
        "objectives": [{"name": "y", "goal": "minimize"}],
        "pool": {"file": table.name},
        "oracle": {"kind": "table", "table": table.name},
    }


def case_categorical_pool(tmp: Path) -> dict[str, Any]:
    solvents, anneal = ["water", "ethanol", "toluene"], [1, 2.5]
    rows = [[s, a, len(s) * a] for s in solvents for a in anneal]
    table = write_csv(tmp / "categorical.csv", ["solvent", "anneal", "y"], rows)
    return {
        "space": [
            {"name": "solvent", "type": "choice", "values": solvents},
            {"name": "anneal", "type": "choice", "values": anneal},
        ],
        "objectives": [{"name": "y", "goal": "minimize"}],
        "pool": {"file": table.name},
        "oracle": {"kind": "table", "table": table.name},
    }


CASES: dict[str, Callable[[Path], dict[str, Any]]] = {
    "range-log-integer-choice-composition": case_space,
    "composition-pool-csv": case_composition_pool,
    "formula-pool": case_formula_pool,
    "numeric-pool": case_numeric_pool,
    "categorical-pool": case_categorical_pool,
}


def campaign_file(tmp: Path, case: str) -> Path:
    data = {
        "name": case,
        "seed": 5,
        **CASES[case](tmp),
        "budget": {"trials": TRIALS},
        "execution": {"max_in_flight": 2, "heartbeat_interval": 0.5, "heartbeat_timeout": 5},
        "strategy": {"method": "sobol"},
    }
    path = tmp / f"{case}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """A command of the CLI in this process: (exit code, what it printed)."""
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out + out.err


@pytest.mark.parametrize("case", list(CASES))
def test_the_stored_spec_reads_back_as_it_was_written(tmp_path: Path, case: str) -> None:
    spec = load_spec(campaign_file(tmp_path, case))
    stored = json.loads(json.dumps(spec.raw))  # what the database gives back
    again = parse_spec(stored)
    assert again.raw == spec.raw and again.hash == spec.hash == spec_hash(stored)
    assert again.pool == spec.pool


def test_pool_fractions_are_kept_as_written(tmp_path: Path) -> None:
    """0.3 stays 0.3 (not 0.29999999999999993) and 0 stays 0 (not 2.6e-16): what a
    campaign records and exports is what the scientist's CSV says."""
    spec = load_spec(campaign_file(tmp_path, "composition-pool-csv"))
    assert spec.pool is not None and len(spec.pool.rows) == 3003
    for row in spec.pool.rows:
        assert all(v == round(v * 10) / 10 for v in row["comp"].values()), row


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_a_finished_campaign_is_intact_for_every_reader(
    tmp_path: Path, case: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """create -> a real controller with spawned drivers -> status, export, audit (the
    readers in this process: the controller's process is the one that must be real)."""
    spec, db = campaign_file(tmp_path, case), tmp_path / "c.db"
    loopctl("start", str(spec), "--db", str(db), "--spawn-drivers", "2")
    code, text = run(["status", str(db), "--json"], capsys)
    assert code == 0, text
    st = json.loads(text)
    assert st["trials"]["completed"] == TRIALS and st["budget"]["left"] == 0
    code, text = run(["export", str(db), "--format", "json"], capsys)
    assert code == 0, text
    rows = json.loads(text)
    assert len(rows) == TRIALS and all(r["status"] == "completed" for r in rows)
    code, text = run(["audit", str(db), "--json"], capsys)
    assert code == 0 and json.loads(text)["ok"], text
    if case == "composition-pool-csv":
        for r in rows:
            for e in ELEMENTS:
                assert r[f"comp.{e}"] == round(r[f"comp.{e}"] * 10) / 10, r


# ------------------------------------------------------------------ edits are caught


@pytest.fixture(params=["new", "checked"])
def db(tmp_path: Path, request: pytest.FixtureRequest) -> Path:
    """``checked``: read once already, so that the edit comes after a verified checkpoint."""
    path = tmp_path / "e.db"
    with Campaign.create(branin(tmp_path, strategy={"method": "sobol"}), path) as c:
        for t in c.ask(3):
            c.tell(t.id, {"y": t.parameters["x1"] ** 2})
    if request.param == "checked":
        assert main(["status", str(path)]) == 0
    return path


def edit(db: Path, sql: str, *args: Any) -> None:
    conn = sqlite3.connect(db)
    conn.execute(sql, args)
    conn.commit()
    conn.close()


def change_bound(db: Path) -> None:
    edit(db, "UPDATE meta SET value = json_set(value, '$.space[0].bounds[1]', 11) WHERE key='spec'")


def change_bound_and_its_hash(db: Path) -> None:
    """A careful editor: the spec and the hash beside it agree, the events do not."""
    change_bound(db)
    conn = sqlite3.connect(db)
    (text,) = conn.execute("SELECT value FROM meta WHERE key = 'spec'").fetchone()
    conn.close()
    edit(
        db,
        "UPDATE meta SET value = ? WHERE key = 'spec_hash'",
        json.dumps(spec_hash(json.loads(text))),
    )


EDITS: dict[str, Callable[[Path], None]] = {
    "spec bound": change_bound,
    "spec bound and its hash": change_bound_and_its_hash,
    "observation": lambda db: edit(db, "UPDATE observations SET value = -1 WHERE trial_id='T0002'"),
    "event payload": lambda db: edit(
        db,
        "UPDATE events SET payload = replace(payload, '\"value\":', '\"value\":1') "
        "WHERE trial_id = 'T0001' AND kind = 'trial_completed'",
    ),
}


def test_an_untouched_database_is_intact_for_every_reader(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["status", str(db)], capsys)[0] == 0
    assert run(["export", str(db)], capsys)[0] == 0
    assert run(["audit", str(db)], capsys)[0] == 0


@pytest.mark.parametrize("what", list(EDITS))
def test_an_edit_is_caught_by_every_reader_alike(
    db: Path, what: str, capsys: pytest.CaptureFixture[str]
) -> None:
    EDITS[what](db)
    code, text = run(["audit", str(db), "--json"], capsys)
    report = json.loads(text)
    assert code == 2 and not report["ok"]
    first = report["problems"][0]["message"]
    for command in ("status", "export"):
        code, text = run([command, str(db)], capsys)
        assert code == 1, f"{command} accepted a database that audit rejects:\n{text}"
        assert f"changed outside loopctl: {first}" in text and "loopctl audit" in text


@pytest.mark.slow
def test_status_while_the_controller_writes_never_calls_it_edited(
    tmp_path: Path, procs: Procs
) -> None:
    """The chain, the tables and the spec are compared on one snapshot: read one after the
    other, rows committed in between would look like rows no event creates."""
    trials = 60
    spec = branin(
        tmp_path,
        strategy={"method": "sobol"},
        budget={"trials": trials},
        execution={"max_in_flight": 4},
        # 0.1 s a trial keeps the campaign running for 2 s or more: without a latency the
        # controller finished 60 Sobol trials before status had looked three times
        oracle={"latency": 0.1},
    )
    db = tmp_path / "w.db"
    ctl = procs.start("start", str(spec), "--db", str(db), "--spawn-drivers", "3", log="ctl.log")
    wait_for(lambda: count(db, "SELECT COUNT(*) FROM events") > 0, 60, "the database")
    seen_running, deadline = 0, time.monotonic() + scaled(120)
    try:
        while ctl.poll() is None:
            assert time.monotonic() < deadline, procs.log("ctl.log")
            st = campaign_status(str(db))  # raises TamperedError on a false alarm
            if st["controller"]["running"] and 0 < st["budget"]["completed"] < trials:
                seen_running += 1
            time.sleep(0.05)  # pacing only: the two cores are shared with the campaign
    finally:
        if ctl.poll() is None:  # a failure: SIGTERM, so that it ends the drivers it spawned
            ctl.terminate()
            ctl.wait(scaled(60))
    assert procs.exit_code(ctl, 60) == 0, procs.log("ctl.log")
    assert seen_running >= 3, "the reads never overlapped the controller's writes"
    assert campaign_status(str(db))["budget"]["completed"] == trials
