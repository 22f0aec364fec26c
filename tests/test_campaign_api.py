"""The Python API: ask/tell over the same database format as the controller."""

from __future__ import annotations

from pathlib import Path

import pytest

from loopctl import Campaign
from loopctl.errors import LoopctlError, TrialError, ValidationError
from tests.conftest import loopctl
from tests.specs import branin, branin_fn


def test_ask_tell_round_trip_in_memory(tmp_path: Path) -> None:
    c = Campaign.create(branin(tmp_path, strategy={"method": "sobol"}))
    trials = c.ask(2)
    assert [t.id for t in trials] == ["T0001", "T0002"]
    assert set(trials[0].parameters) == {"x1", "x2"}
    c.tell(trials[0].id, {"y": 5.0})
    c.tell(trials[1].id, {"y": (4.0, 0.1)})
    best = c.best()
    assert best is not None and best["trial_id"] == "T0002" and best["value"] == 4.0
    df = c.to_dataframe()
    assert list(df["y"]) == [5.0, 4.0] and list(df["y_sem"].fillna(-1)) == [-1, 0.1]
    assert list(df["status"]) == ["completed", "completed"]


def test_tell_validates(tmp_path: Path) -> None:
    c = Campaign.create(branin(tmp_path, strategy={"method": "sobol"}))
    (t,) = c.ask()
    with pytest.raises(ValidationError, match="y: must be a finite number"):
        c.tell(t.id, {"y": float("nan")})
    with pytest.raises(ValidationError, match="unknown outcome 'z'"):
        c.tell(t.id, {"y": 1.0, "z": 2.0})
    with pytest.raises(ValidationError, match="y: missing"):
        c.tell(t.id, {})
    with pytest.raises(TrialError, match="no trial 'T0042'"):
        c.tell("T0042", {"y": 1.0})
    c.tell(t.id, {"y": 1.0})
    c.tell(t.id, {"y": 1.0})  # the same result again: a harmless retry
    with pytest.raises(TrialError, match="already has a result"):
        c.tell(t.id, {"y": 2.0})  # another value is refused, not silently dropped
    assert c.best()["value"] == 1.0  # type: ignore[index]


def test_retryable_failure_is_asked_again(tmp_path: Path) -> None:
    c = Campaign.create(branin(tmp_path, strategy={"method": "sobol"}))
    (t,) = c.ask()
    c.fail(t.id, "robot jammed", retryable=True)
    (again,) = c.ask()
    assert again.id == t.id and again.parameters == t.parameters
    c.fail(again.id, "sample burnt")
    assert c.store.trial(t.id)["status"] == "failed"  # type: ignore[index]


@pytest.mark.slow
def test_bo_with_ask_tell_beats_first_guesses(tmp_path: Path) -> None:
    c = Campaign.create(branin(tmp_path, seed=3))
    for _ in range(16):
        (t,) = c.ask()
        c.tell(t.id, {"y": branin_fn(t.parameters["x1"], t.parameters["x2"])})
    strategies = [p["strategy"] for p in c.store.proposals()]
    assert strategies[:4] == ["sobol"] * 4 and set(strategies[4:]) == {"botorch"}
    df = c.to_dataframe()
    assert df["y"].iloc[4:].min() < df["y"].iloc[:4].min()
    assert c.best()["value"] < 2.0  # type: ignore[index]
    diag = c.store.proposals()[-1]["diagnostics"]
    assert diag["lengthscales"] and diag["candidates"][0]["predicted"]["y"][1] > 0


def test_import_export_and_open(tmp_path: Path) -> None:
    db = tmp_path / "i.db"
    Campaign.create(branin(tmp_path, strategy={"method": "sobol"}), db).close()
    past = tmp_path / "past.csv"
    past.write_text("x1,x2,y,y_sem,operator\n1.0,2.0,30.5,0.2,ann\n-3.1,12.3,0.5,,bob\n")
    r = loopctl("import", str(db), str(past))
    assert "imported 2 trials" in r.stdout
    with Campaign.open(db) as c:
        first = next(c.store.events(since=0))
        imported = [e for e in c.store.events() if e.kind == "trial_imported"]
        assert first.kind == "campaign_created"
        assert imported[0].payload["metadata"] == {"operator": "ann"}
        best = c.best()
        assert best is not None and best["value"] == 0.5 and best["origin"] == "imported"
        (t,) = c.ask()
        assert t.id == "T0003"
    out = tmp_path / "e.csv"
    loopctl("export", str(db), "--format", "csv", "--out", str(out))
    lines = out.read_text().splitlines()
    assert lines[0].startswith("trial_id,status,origin,strategy,x1,x2,y,y_sem,driver")
    assert lines[1].startswith("T0001,completed,imported,,1.0,2.0,30.5,0.2")
    js = loopctl("export", str(db), "--format", "json").stdout
    assert '"origin": "imported"' in js


@pytest.mark.parametrize(
    "body,message",
    [
        ("x1,x2,y\n1,2,nan\n", "row 2.y: must be a finite number"),
        ("x1,x2,y\n11,2,3\n", "row 2.x1: 11 is outside the bounds"),
        ("x1,x2,y\n1,2,3\n1,,3\n", "row 3.x2: missing"),
        ("x1,x2\n1,2\n", "no column for objective 'y'"),
        ("X1,x2,y\n1,2,3\n", "row 2.x1: missing"),
        ("x1,x2,y\n1,2,3,4\n", "row 2"),
    ],
)
def test_import_rejects_bad_rows_whole(tmp_path: Path, body: str, message: str) -> None:
    db = tmp_path / "i.db"
    Campaign.create(branin(tmp_path, strategy={"method": "sobol"}), db).close()
    bad = tmp_path / "bad.csv"
    bad.write_text(body)
    r = loopctl("import", str(db), str(bad), check=False)
    assert r.returncode == 1 and message in r.stderr, r.stderr
    with Campaign.open(db) as c:
        assert c.trials() == []


def test_ask_keeps_to_the_budget_and_says_when_the_space_runs_out(tmp_path: Path) -> None:
    with Campaign.create(branin(tmp_path, strategy={"method": "sobol"}, budget={"trials": 5})) as c:
        with pytest.warns(UserWarning, match=r"only 5 trials are left of the budget of 5"):
            trials = c.ask(30)
        assert len(trials) == 5
        for t in trials:
            c.tell(t.id, {"y": 1.0})
        with pytest.raises(LoopctlError, match="budget of 5 trials is used"):
            c.ask(1)
    tiny = {
        "name": "tiny",
        "space": [{"name": "n", "type": "integer", "bounds": [1, 3]}],
        "objectives": [{"name": "y", "goal": "minimize"}],
        "budget": {"trials": 10},
        "strategy": "sobol",
    }
    with (
        Campaign.create(tiny) as c,
        pytest.warns(UserWarning, match="no more new candidates; returning 3"),
    ):
        assert len(c.ask(5)) == 3


def test_csv_export_defuses_formulas_and_bounds_errors_show_the_digits(tmp_path: Path) -> None:
    db = tmp_path / "f.db"
    with Campaign.create(branin(tmp_path, strategy={"method": "sobol"}), db) as c:
        (t,) = c.ask()
        c.tell(t.id, {"y": -1.5}, {"notes": "=cmd|' /C calc'!A0", "operator": "+ann"})
        with pytest.raises(ValidationError, match=r"-5\.000001 is outside the bounds \[-5, 10\]"):
            c.space.validate({"x1": -5.000001, "x2": 1.0}, "suggestion")
    text = loopctl("export", str(db), "--format", "csv").stdout
    assert "'=cmd|' /C calc'!A0" in text and ",'+ann," in text
    assert ",-1.5," in text  # numbers are left alone


def test_the_same_rows_imported_twice_are_refused_unless_forced(tmp_path: Path) -> None:
    past = tmp_path / "past.csv"
    past.write_text("x1,x2,y,notes\n1,2,30.5,first batch\n3,4,12.25,\n")
    db = tmp_path / "i.db"
    Campaign.create(branin(tmp_path, strategy={"method": "sobol"}), db).close()
    assert "imported 2 trials" in loopctl("import", str(db), str(past)).stdout
    again = loopctl("import", str(db), str(past), check=False)
    assert again.returncode == 1
    assert "2 of 2 rows were imported before: row 2 (as T0001), row 3 (as T0002)" in again.stderr
    other = tmp_path / "other.csv"  # the same measurement in another file is caught too
    other.write_text("x1,x2,y\n5,6,7\n3,4,12.25\n")
    assert "row 3 (as T0002)" in loopctl("import", str(db), str(other), check=False).stderr
    assert "imported 2 trials" in loopctl("import", str(db), str(other), "--force").stdout
    csv_text = loopctl("export", str(db), "--format", "csv").stdout
    assert "first batch" in csv_text  # a column that is neither parameter nor objective is kept


@pytest.mark.slow
def test_start_with_past_measurements(tmp_path: Path) -> None:
    spec = branin(tmp_path, strategy={"method": "sobol"}, budget={"trials": 3})
    bad = tmp_path / "bad.csv"
    bad.write_text("x1,x2,y\n1,2,nan\n")
    db = tmp_path / "s.db"
    r = loopctl("start", str(spec), "--db", str(db), "--import", str(bad), check=False)
    assert r.returncode == 1 and "row 2.y" in r.stderr
    assert not list(tmp_path.glob("s.db*"))  # nothing half-made left behind
    past = tmp_path / "past.csv"
    past.write_text("x1,x2,y\n1,2,30.5\n")
    r = loopctl("start", str(spec), "--db", str(db), "--import", str(past), "--spawn-drivers", "1")
    assert "imported 1 trials (T0001..T0001)" in r.stdout
    with Campaign.open(db) as c:
        origins = [t["origin"] for t in c.trials()]
    assert origins.count("imported") == 1 and len(origins) == 4  # 3 of its own besides
