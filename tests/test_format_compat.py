"""A campaign database written before the event catalogue and the spec split (format 1,
made by commit c677cc9 on campaigns/branin.yaml with 9 trials) must still verify and
replay: audits of old campaigns are the reason the log is kept."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.conftest import loopctl

OLD = Path(__file__).parent / "data" / "format1-branin.db"


def test_format1_database_audits_and_replays_every_proposal(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    shutil.copy(OLD, db)
    audit = loopctl("audit", str(db), "--replay", timeout=600)
    assert audit.returncode == 0, audit.stdout + audit.stderr
    replayed = [line for line in audit.stdout.splitlines() if line.strip().startswith("P0")]
    assert len(replayed) == 6, audit.stdout  # two Sobol and four GP proposals
    assert all(": same" in line for line in replayed), audit.stdout
    assert sum("botorch" in line for line in replayed) == 4
    status = loopctl("status", str(db))
    assert status.returncode == 0, status.stderr
    assert "trials: 9 completed" in status.stdout, status.stdout
