"""Commands called in this process (parsing, databases read and written, exit codes), and
:mod:`loopctl.run` called from Python the way a notebook calls it, with real drivers."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from loopctl import Campaign, run
from loopctl.errors import LoopctlError
from tests.conftest import CAMPAIGNS
from tests.inprocess import cli
from tests.specs import branin

Capsys = pytest.CaptureFixture[str]


def test_init_validate_and_keys(tmp_path: Path, capsys: Capsys) -> None:
    target = tmp_path / "mine.yaml"
    assert f"wrote {target}" in cli(capsys, "init", str(target)).stdout
    again = cli(capsys, "init", str(target), check=False)
    assert again.returncode == 1 and "use --force" in again.stderr
    out = cli(capsys, "validate", str(target)).stdout
    assert "is valid" in out and "objectives:" in out
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\n")
    r = cli(capsys, "validate", str(bad), check=False)
    assert r.returncode == 1 and r.stderr.startswith("error: ") and "space" in r.stderr
    keys = tmp_path / "keys"
    r = cli(capsys, "keys", "generate", "ctl", "--out", str(keys))
    assert "fingerprint" in r.stdout and (keys / "ctl.key").exists()
    assert (keys / "ctl.key_secret").stat().st_mode & 0o077 == 0  # private to its owner
    r = cli(capsys, "keys", "generate", "ctl", "--out", str(keys), check=False)
    assert r.returncode == 1 and "not overwriting a key" in r.stderr


def test_status_export_import_and_pending(tmp_path: Path, capsys: Capsys) -> None:
    db = tmp_path / "c.db"
    spec = branin(tmp_path, strategy={"method": "sobol"})
    with Campaign.create(spec, db) as c:
        for t, y in zip(c.ask(2), (3.0, 1.5), strict=True):
            c.tell(t.id, {"y": y})
    status = json.loads(cli(capsys, "status", str(db), "--json").stdout)
    assert status["best"]["value"] == 1.5 and status["best"]["trial_id"] == "T0002"
    assert json.loads(cli(capsys, "pending", str(db), "--json").stdout) == []
    past = tmp_path / "past.csv"
    past.write_text("x1,x2,y\n1,2,0.5\n")
    assert "imported 1 trials (T0003..T0003)" in cli(capsys, "import", str(db), str(past)).stdout
    again = cli(capsys, "import", str(db), str(past), check=False)
    assert again.returncode == 1 and "imported before" in again.stderr, again.stderr
    rows = cli(capsys, "export", str(db), "--format", "csv").stdout.splitlines()
    assert len(rows) == 4 and rows[0].startswith("trial_id")
    trials = json.loads(cli(capsys, "export", str(db), "--format", "json").stdout)
    assert [t["origin"] for t in trials].count("imported") == 1
    r = cli(capsys, "export", str(db), "--format", "parquet", check=False)
    assert r.returncode == 1 and "give --out" in r.stderr
    assert "best: y = 0.5 at x1=1, x2=2 (trial T0003)" in cli(capsys, "status", str(db)).stdout
    assert cli(capsys, "audit", str(db)).returncode == 0


@pytest.mark.parametrize(
    ("extra", "changes", "message"),
    [
        (["--trials", "0"], {}, "--trials must be at least 1"),
        (["--spawn-drivers", "1"], {"oracle": None}, "has no `oracle` section"),
        (["--bind", "tcp://0.0.0.0:*"], {}, "is reachable from other machines"),
        (["--curve-secret-key", "ctl.key_secret"], {}, "CURVE needs both"),
        (["--sync", "OFF"], {}, "invalid choice: 'OFF'"),
    ],
)
def test_start_refuses_what_cannot_work_before_creating_anything(
    tmp_path: Path, capsys: Capsys, extra: list[str], changes: dict[str, Any], message: str
) -> None:
    spec = branin(tmp_path, **changes)
    db = tmp_path / "c.db"
    r = cli(capsys, "start", str(spec), "--db", str(db), *extra, check=False)
    assert r.returncode in (1, 2) and message in r.stderr, r.stderr
    assert not list(tmp_path.glob("c.db*"))


def test_start_and_resume_from_python_inside_a_running_event_loop(tmp_path: Path) -> None:
    """What a notebook does: its cells run inside the kernel's event loop, where the
    controller's own loop could not start unless that one is set aside for the run."""
    spec = branin(tmp_path, strategy={"method": "sobol"}, budget={"trials": 3})
    db = tmp_path / "nb.db"
    lines: list[str] = []

    async def cell() -> run.RunResult:
        return run.start(spec, db, spawn_drivers=1, echo=lines.append)

    first = asyncio.run(cell())
    assert first.ok and first.completed == 3 and first.failed == 0, first
    assert first.reason == "budget: 3 trials completed" and first.db == db.resolve()
    assert any(line.startswith("controller listening on tcp://127.0.0.1:") for line in lines)
    assert lines[-1].startswith("finished: budget: 3 trials completed")
    more = run.resume(db, trials=5, spawn_drivers=1, echo=lines.append)
    assert more.ok and more.completed == 5, more
    with Campaign.open(db) as c:
        assert len([t for t in c.trials() if t["status"] == "completed"]) == 5


def test_library_refuses_a_durability_it_does_not_know(tmp_path: Path) -> None:
    with pytest.raises(LoopctlError, match="sync 'OFF'"):
        run.start(CAMPAIGNS / "branin.yaml", tmp_path / "c.db", sync="OFF")
    assert not list(tmp_path.glob("c.db*"))
