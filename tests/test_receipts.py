"""Receipts: every ACK names the event that recorded the report, the driver keeps it, and
`audit --receipts` finds an acknowledged report the log no longer holds, which the hash
chain alone cannot (a restored backup is consistent in itself)."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from loopctl.store import GENESIS, event_hash
from tests.conftest import Procs, count, db_rows, loopctl
from tests.specs import branin

pytestmark = pytest.mark.slow


def receipts(outbox: Path) -> list[dict[str, object]]:
    return [
        json.loads(x) for f in outbox.rglob("receipts.jsonl") for x in f.read_text().splitlines()
    ]


def run(procs: Procs, db: Path, ipc: str, *command: str, log: str) -> None:
    ctl = procs.start("-v", *command, "--bind", ipc, log=log)
    drv = procs.driver(ipc, "d")
    assert procs.exit_code(ctl, 120) == 0, procs.log(log)
    assert procs.exit_code(drv, 30) == 0, procs.log("d.log")


def test_a_restored_backup_is_caught_by_the_drivers_receipts(
    tmp_path: Path, procs: Procs, ipc: str
) -> None:
    spec = branin(tmp_path, strategy={"method": "sobol"})
    db, backup, outbox = tmp_path / "r.db", tmp_path / "backup.db", tmp_path / "d.outbox"
    run(procs, db, ipc, "start", str(spec), "--db", str(db), "--trials", "3", log="a.log")
    shutil.copy(db, backup)  # the controller stopped cleanly: no WAL left to copy
    run(procs, db, ipc, "resume", str(db), "--trials", "6", log="b.log")

    kept = receipts(outbox)
    recorded = db_rows(
        db, "SELECT seq, hash, trial_id FROM events WHERE kind = 'trial_completed' ORDER BY seq"
    )
    assert [(r["seq"], r["hash"], r["trial"]) for r in kept] == [tuple(x) for x in recorded]
    assert len(kept) == 6 and {r["driver"] for r in kept} == {"d"}
    ok = loopctl("audit", str(db), "--receipts", str(tmp_path), "--json")
    report = json.loads(ok.stdout)
    assert report["ok"] and report["receipts"]["receipts"] == 6

    shutil.copy(backup, db)  # three acknowledged results gone, and the log is intact
    assert loopctl("audit", str(db)).returncode == 0
    r = loopctl("audit", str(db), "--receipts", str(outbox), check=False)
    assert r.returncode == 2, r.stdout
    lost = [line for line in r.stdout.splitlines() if "PROBLEM (receipts" in line]
    assert len(lost) == 3, r.stdout
    for trial, line in zip(("T0004", "T0005", "T0006"), lost, strict=True):
        assert f"trial {trial} acknowledged to d" in line and "is not in the log" in line


def rechain(db: Path, seq: int, payload: dict[str, object]) -> None:
    """Rewrite one event and recompute every hash from there on: a forgery the chain
    cannot see."""
    conn = sqlite3.connect(db)
    conn.execute("UPDATE events SET payload = ? WHERE seq = ?", (json.dumps(payload), seq))
    prev = conn.execute("SELECT hash FROM events WHERE seq = ?", (seq - 1,)).fetchone()
    prev_hash = prev[0] if prev else GENESIS
    rows = conn.execute(
        "SELECT seq, time, kind, trial_id, payload FROM events WHERE seq >= ? ORDER BY seq",
        (seq,),
    ).fetchall()
    for s, t, kind, trial, text in rows:
        prev_hash = event_hash(prev_hash, s, t, kind, trial, text)
        conn.execute("UPDATE events SET hash = ? WHERE seq = ?", (prev_hash, s))
    conn.commit()
    conn.close()


def test_a_rewritten_history_and_a_wrong_directory_are_caught(
    tmp_path: Path, procs: Procs, ipc: str
) -> None:
    spec = branin(tmp_path, strategy={"method": "sobol"})
    db, outbox = tmp_path / "w.db", tmp_path / "d.outbox"
    run(procs, db, ipc, "start", str(spec), "--db", str(db), "--trials", "3", log="a.log")
    seq, text = db_rows(
        db, "SELECT seq, payload FROM events WHERE kind = 'trial_completed' ORDER BY seq"
    )[1]
    payload = json.loads(text)
    payload["metadata"] = {**payload["metadata"], "note": "measured on the good instrument"}
    rechain(db, seq, payload)
    assert loopctl("audit", str(db)).returncode == 0  # consistent in itself
    r = loopctl("audit", str(db), "--receipts", str(outbox), check=False)
    assert r.returncode == 2 and f"as event {seq} differs from the log" in r.stdout, r.stdout

    elsewhere = tmp_path / "other"
    elsewhere.mkdir()
    r = loopctl("audit", str(db), "--receipts", str(elsewhere), check=False)
    assert r.returncode == 2 and "no receipt for this campaign" in r.stdout, r.stdout
    r = loopctl("audit", str(db), "--receipts", str(tmp_path / "missing"), check=False)
    assert r.returncode != 0 and "no such directory of receipts" in r.stderr
    assert count(db, "SELECT COUNT(*) FROM events WHERE kind = 'trial_completed'") == 3
