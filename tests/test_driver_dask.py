"""`loopctl driver dask --local 2`: the same executor seam as Parsl's, on a Dask LocalCluster."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import psutil
import pytest

from tests.conftest import TCP_ANY, Procs, count, db_rows, loopctl
from tests.specs import branin, branin_fn

pytestmark = pytest.mark.slow


def _dask(procs: Procs, endpoint: str, name: str, *extra: str) -> subprocess.Popen[str]:
    return procs.start(
        "-v",
        "driver",
        "dask",
        "--local",
        "2",
        "--connect",
        endpoint,
        "--name",
        name,
        "--outbox",
        str(procs.tmp / f"{name}.outbox"),
        *extra,
        log=f"{name}.log",
    )


def test_dask_worker_killed_mid_trial_is_retried_and_the_campaign_completes(
    tmp_path: Path, procs: Procs
) -> None:
    spec = branin(
        tmp_path,
        strategy={"method": "sobol"},
        budget={"trials": 6},
        execution={"max_in_flight": 2, "heartbeat_interval": 0.5, "heartbeat_timeout": 10},
    )
    db = tmp_path / "d.db"
    ctl = procs.controller(spec, db, TCP_ANY)
    drv = _dask(procs, procs.endpoint(ctl), "dask", "--latency", "1.5")
    procs.wait_for(
        lambda: count(db, "SELECT COUNT(*) FROM trials WHERE status = 'running'") == 2,
        60,
        "two trials on the two workers",
        ctl,
    )
    # the LocalCluster's worker processes are the driver's children (their nannies run in
    # the driver); with two trials on two single-threaded workers, either one is busy
    worker = next(
        p for p in psutil.Process(drv.pid).children() if "dask worker" in " ".join(p.cmdline())
    )
    worker.kill()
    assert procs.exit_code(ctl, 60) == 0, procs.log("dask.log")
    assert procs.exit_code(drv, 30) == 0, procs.log("dask.log")
    failed = [
        json.loads(line.split("report FAILED ", 1)[1])
        for line in procs.log("dask.log").splitlines()
        if "report FAILED " in line
    ]
    assert len(failed) == 1 and failed[0]["retryable"] is True
    assert "KilledWorker" in failed[0]["reason"]
    assert db_rows(db, "SELECT status, COUNT(*) FROM trials GROUP BY status") == [("completed", 6)]
    assert count(db, "SELECT COUNT(*) FROM events WHERE kind = 'trial_completed'") == 6
    for x1, x2, y in db_rows(
        db,
        "SELECT json_extract(parameters, '$.x1'), json_extract(parameters, '$.x2'), o.value "
        "FROM trials t JOIN observations o ON o.trial_id = t.id",
    ):
        assert y == pytest.approx(branin_fn(x1, x2))
    assert db_rows(db, "SELECT capacity FROM drivers") == [(2,)]
    assert loopctl("audit", str(db)).returncode == 0
