"""The human-entry driver, driven through a real pseudo-terminal."""

from __future__ import annotations

import sys
from pathlib import Path

import pexpect
import pytest

from tests.conftest import ENV, ROOT, TCP_ANY, Procs, count, db_rows, loopctl, scaled
from tests.specs import branin

pytestmark = pytest.mark.slow


def human(ep: str, tmp: Path, name: str = "bench") -> pexpect.spawn:
    return pexpect.spawn(
        sys.executable,
        [
            "-m",
            "loopctl",
            "driver",
            "human",
            "--connect",
            ep,
            "--operator",
            "ann",
            "--name",
            name,
            "--outbox",
            str(tmp / "ob"),
        ],
        cwd=str(ROOT),
        env=ENV,
        encoding="utf-8",
        timeout=scaled(20),
    )


def test_a_person_enters_fails_defers_and_reopens(tmp_path: Path, procs: Procs) -> None:
    spec = branin(
        tmp_path,
        strategy={"method": "sobol"},
        budget={"trials": 2},
        objectives=[{"name": "y", "goal": "minimize", "unit": "mS/cm"}],
        execution={
            "max_in_flight": 1,
            "retries": 3,
            "heartbeat_timeout": 3,
            "heartbeat_interval": 0.5,
        },
    )
    db = tmp_path / "h.db"
    ctl = procs.controller(spec, db, TCP_ANY)
    ep = procs.endpoint(ctl)
    p = human(ep, tmp_path)
    p.expect("Experiment (T\\d+)")
    first = p.match.group(1)
    p.expect("x1 = ")
    p.expect(r"y \[mS/cm\]: ")
    p.sendline("abc")  # not a number
    p.expect("'abc' is not a number")
    p.expect(r"y \[mS/cm\]: ")
    p.sendline("12 V")  # wrong unit
    p.expect("does not match")
    p.expect(r"y \[mS/cm\]: ")
    p.sendline("nan")
    p.expect("not a number|must be finite")
    p.expect(r"y \[mS/cm\]: ")
    p.sendline("l")  # later: back to the queue
    p.expect("Experiment (T\\d+)")
    p.expect(r"y \[mS/cm\]: ")
    p.sendline("f")
    p.expect("Why did it fail")
    p.sendline("film peeled off")
    p.expect("Experiment (T\\d+)")
    third = p.match.group(1)
    p.expect(r"y \[mS/cm\]: ")
    p.sendline("4.5 mS/cm")
    p.expect("notes")
    p.sendline("four-point probe")
    p.expect(r"\[y/n\]")
    p.sendline("y")
    p.expect("Experiment (T\\d+)")
    p.expect(r"y \[mS/cm\]: ")
    p.sendeof()  # the person closes the program mid-entry
    p.expect(pexpect.EOF)
    p.close()
    assert p.exitstatus == 0
    assert count(db, "SELECT COUNT(*) FROM trials WHERE status = 'completed'") == 1
    # reopened: the campaign carries on with the same person
    q = human(ep, tmp_path)
    q.expect(r"y \[mS/cm\]: ", timeout=scaled(30))
    q.sendline("7.25")
    q.expect("notes")
    q.sendline("")
    q.expect(r"\[y/n\]")
    q.sendline("y")
    assert procs.exit_code(ctl, 30) == 0, procs.log("controller.log")
    q.expect(pexpect.EOF)
    statuses = dict(db_rows(db, "SELECT id, status FROM trials"))
    assert statuses[third] == "completed"
    reasons = [r for (r,) in db_rows(db, "SELECT reason FROM trials WHERE status = 'failed'")]
    assert reasons == ["film peeled off (entered by ann)"]
    assert list(statuses.values()).count("completed") == 2
    assert first in statuses
    csv = loopctl("export", str(db), "--format", "csv").stdout
    assert "ann,four-point probe" in csv
    assert "entered by ann" in loopctl("audit", str(db)).stdout


def test_later_and_quit_put_a_trial_back_without_using_a_retry(
    tmp_path: Path, procs: Procs
) -> None:
    """With retries: 0, 'l' and 'q' used to fail the trial for good, and the report of 'q'
    was refused (bad_state) when the program was opened again."""
    spec = branin(
        tmp_path,
        strategy={"method": "sobol"},
        budget={"trials": 2},
        execution={"max_in_flight": 1, "retries": 0, "heartbeat_interval": 0.5},
    )
    db = tmp_path / "h.db"
    ctl = procs.controller(spec, db, TCP_ANY)
    ep = procs.endpoint(ctl)
    p = human(ep, tmp_path)
    p.expect("Experiment (T\\d+)")
    first = p.match.group(1)
    p.expect("y: ")
    p.sendline("l")
    p.expect("Experiment (T\\d+)")
    assert p.match.group(1) == first  # the only one queued: back at once, not failed
    p.expect("y: ")
    p.sendline("q")  # closes the program mid-entry
    p.expect(pexpect.EOF)
    p.close()
    assert p.exitstatus == 0
    q = human(ep, tmp_path)
    for value in ("1.5", "2.5"):
        q.expect("Experiment (T\\d+)", timeout=scaled(30))
        q.expect("y: ")
        q.sendline(value)
        q.expect("notes")
        q.sendline("")
        q.expect(r"\[y/n\]")
        q.sendline("y")
    assert procs.exit_code(ctl, 30) == 0, procs.log("controller.log")
    q.expect(pexpect.EOF)
    assert db_rows(db, "SELECT status, COUNT(*) FROM trials GROUP BY status") == [("completed", 2)]
    assert db_rows(db, "SELECT attempts FROM trials WHERE id = ?", first) == [(1,)]
    assert count(db, "SELECT COUNT(*) FROM events WHERE kind = 'trial_released'") == 2
    assert count(db, "SELECT COUNT(*) FROM events WHERE kind = 'trial_failed'") == 0
    log = procs.log("controller.log")
    assert "bad_state" not in log and "cannot be" not in log, log  # its reports all taken
    assert "put back for later by ann" in loopctl("audit", str(db)).stdout
