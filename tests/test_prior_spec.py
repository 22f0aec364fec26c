"""The `prior` section: which rows are kept, which dropped and which stop the campaign
file with an error naming file and row; what the database keeps (the rows, the file's
hash, a database's campaign id) so that audit names the prior and replay needs no file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loopctl.campaign import Campaign
from loopctl.errors import SpecError
from loopctl.prior_file import file_sha256
from loopctl.spec import load_spec, parse_spec
from loopctl.store import Store
from tests.inprocess import cli

HEAD = """name: warm
seed: 3
space:
  - {name: x, type: range, bounds: [0, 1]}
  - {name: kind, type: choice, values: [a, b]}
objectives: [{name: y, goal: maximize}]
budget: {trials: 4}
strategy: {initial_trials: 2}
"""


def write(tmp_path: Path, csv_text: str, extra: str = "") -> Path:
    (tmp_path / "past").mkdir(exist_ok=True)
    (tmp_path / "past" / "old.csv").write_text(csv_text)
    path = tmp_path / "c.yaml"
    path.write_text(HEAD + "prior:\n  - file: past/old.csv\n" + extra)
    return path


GOOD = "x,kind,y\n0.1,a,1.0\n0.5,b,2.5\n0.9,a,0.5\n0.7,b,2.0\n0.3,a,1.5\n"


def test_rows_outside_the_space_or_without_a_value_are_dropped_and_counted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, GOOD + "1.5,a,3\n0.2,c,3\n0.2,a,\n0.4,b,nan\n")
    spec = load_spec(path)
    said = cli(capsys, "validate", str(path)).stdout
    assert "prior: past/old.csv (5 rows; sha256 " in said
    assert "4 dropped: 2 outside this campaign's space, 2 no value of y)" in said
    assert "1 prior source: a multi-task GP" in said
    (source,) = spec.prior
    assert len(source.rows) == 5 and source.rows[1] == {"x": 0.5, "kind": "b", "y": 2.5}
    assert source.dropped == {"outside this campaign's space": 2, "no value of y": 2}
    assert source.sha256 == file_sha256(tmp_path / "past" / "old.csv")
    assert source.file == "past/old.csv"  # as written; resolved against the campaign file
    # the stored form keeps the rows: parsed again without the file, it is the same spec
    (tmp_path / "past" / "old.csv").unlink()
    again = parse_spec(spec.raw, source="stored", read_files=False)
    assert again.prior == spec.prior and again.raw == spec.raw


@pytest.mark.parametrize(
    ("csv_text", "message"),
    [
        ("x,y\n0.1,1\n", "old.csv: no column 'kind' (for 'kind')"),
        ("x,kind,yield\n0.1,a,1\n", "no column 'y' (for 'y')"),
        (GOOD + "0.2,a,high\n", "old.csv row 7: the objective 'y' is 'high', not a number"),
        ("x,kind,y\n0.1,a,\n2,a,1\n", "no usable row (1 no value of y, 1 outside"),
    ],
)
def test_bad_prior_data_is_an_error_naming_file_and_row(
    tmp_path: Path, csv_text: str, message: str
) -> None:
    with pytest.raises(SpecError, match="prior") as err:
        load_spec(write(tmp_path, csv_text))
    assert message in str(err.value)


def test_columns_map_other_names_and_a_recorded_hash_must_match(tmp_path: Path) -> None:
    text = "pos,kind,yield\n0.1,a,1\n0.6,b,2\n"
    spec = load_spec(write(tmp_path, text, "    columns: {x: pos, y: yield}\n"))
    assert spec.prior[0].rows[1] == {"x": 0.6, "kind": "b", "y": 2.0}
    with pytest.raises(SpecError, match="has changed since its hash was recorded"):
        load_spec(write(tmp_path, text, "    columns: {x: pos, y: yield}\n    sha256: abc\n"))


def test_a_prior_needs_one_objective_and_no_fidelities(tmp_path: Path) -> None:
    raw = {
        "name": "t",
        "space": [{"name": "x", "type": "range", "bounds": [0, 1]}],
        "objectives": [{"name": "y", "goal": "maximize"}, {"name": "z", "goal": "minimize"}],
        "budget": {"trials": 3},
        "prior": [{"rows": [{"x": 0.5, "y": 1}]}],
    }
    with pytest.raises(SpecError, match="a prior needs a campaign with one objective"):
        parse_spec(raw)


def test_an_earlier_campaign_database_is_a_prior_with_its_campaign_id(tmp_path: Path) -> None:
    old = tmp_path / "old.db"
    raw = {
        "name": "earlier",
        "seed": 1,
        "space": [
            {"name": "x", "type": "range", "bounds": [0, 2]},
            {"name": "kind", "type": "choice", "values": ["a", "b"]},
        ],
        "objectives": [{"name": "y", "goal": "maximize"}],
        "budget": {"trials": 8},
        "strategy": {"method": "sobol"},
    }
    with Campaign.create(raw, old) as c:
        for t in c.ask(8):
            c.tell(t.id, {"y": t.parameters["x"] ** 2})
        inside = sum(t["parameters"]["x"] <= 1 for t in c.trials())
        cid = c.store.campaign_id()
    path = tmp_path / "c.yaml"
    path.write_text(HEAD + "prior:\n  - file: old.db\n")
    (source,) = load_spec(path).prior
    # x in [0, 2] there, [0, 1] here: the trials beyond 1 are dropped
    assert source.campaign == cid and source.sha256 == file_sha256(old)
    assert 0 < len(source.rows) == inside < 8
    assert source.dropped == {"outside this campaign's space": 8 - inside}
    assert all(r["y"] == r["x"] ** 2 for r in source.rows)


def test_audit_names_the_prior_and_replay_needs_no_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, GOOD)
    spec = load_spec(path)
    db = tmp_path / "warm.db"
    with Campaign.create(spec, db) as c:
        for _ in range(4):
            t = c.ask(1)[0]
            c.tell(t.id, {"y": 2 - (t.parameters["x"] - 0.6) ** 2})
        strategies = [p["strategy"] for p in c.store.proposals()]
        diag = c.store.proposals()[-1]["diagnostics"]
    assert strategies == ["sobol", "sobol", "transfer", "transfer"]
    (used,) = diag["prior"]["sources"]
    assert used["rows"] == 5 and used["sha256"] == spec.prior[0].sha256
    assert 0.0 <= used["correlation"] <= 1.0
    (tmp_path / "past" / "old.csv").unlink()  # replay uses the stored rows
    out = cli(capsys, "audit", str(db), "--replay").stdout
    assert f"past/old.csv: 5 rows, sha256 {spec.prior[0].sha256}" in out
    assert "is gone (the rows are stored here)" in out
    assert out.count(": same (") == 4 and "DIFFERENT" not in out, out
    assert "prior correlation" in out
    with Store.open(db, readonly=True) as store:
        stored = store.meta("spec")["prior"][0]
    assert stored["rows"][0] == {"kind": "a", "x": 0.1, "y": 1.0}
    assert json.dumps(stored["sha256"]).strip('"') == spec.prior[0].sha256
