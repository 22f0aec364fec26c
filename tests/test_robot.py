"""The robot driver against the real robot-sim HTTP server, with real processes."""

from __future__ import annotations

import json
import re
import signal
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, TCP_ANY, Procs, count, db_rows, scaled, wait_for

pytestmark = pytest.mark.slow
CAMPAIGN = ROOT / "campaigns" / "thin-film-robot.yaml"


def http(url: str, method: str = "GET") -> Any:
    req = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    with urllib.request.urlopen(req, timeout=scaled(5)) as r:
        return json.loads(r.read())


def robot(procs: Procs, *extra: str, port: int = 0, log: str = "sim.log") -> tuple[Any, int]:
    """A robot-sim on ``port`` (0: any free one, read from the line it prints)."""
    p = procs.start("robot-sim", "--port", str(port), *extra, log=log)
    procs.wait_for(lambda: "listening" in procs.log(log), 20, "the robot to listen", p)
    (url,) = re.findall(r"listening on (\S+)", procs.log(log))
    return p, int(url.rsplit(":", 1)[1])


def campaign(tmp: Path, **changes: Any) -> Path:
    import yaml

    data = yaml.safe_load(CAMPAIGN.read_text())
    for key, value in changes.items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    path = tmp / "films.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def start(procs: Procs, tmp: Path, port: int, spec: Path, capacity: int = 2) -> tuple[Any, Path]:
    db = tmp / "films.db"
    ctl = procs.controller(spec, db, TCP_ANY)
    procs.start(
        "-v",
        "driver",
        "robot",
        "--connect",
        procs.endpoint(ctl),
        "--robot-url",
        f"http://127.0.0.1:{port}",
        "--name",
        "robot-1",
        "--capacity",
        str(capacity),
        "--outbox",
        str(tmp / "ob"),
        log="driver.log",
    )
    return ctl, db


def completed(db: Path) -> int:
    return count(db, "SELECT COUNT(*) FROM trials WHERE status = 'completed'")


def test_openapi_and_normal_completion(tmp_path: Path, procs: Procs) -> None:
    _, port = robot(procs, "--latency", "0.2")
    api = http(f"http://127.0.0.1:{port}/openapi.json")
    assert api["openapi"].startswith("3.") and "/jobs/{id}" in api["paths"]
    ctl, db = start(procs, tmp_path, port, campaign(tmp_path, budget={"trials": 6}))
    assert procs.exit_code(ctl, 60) == 0, procs.log("controller.log")
    assert completed(db) == 6
    rows = db_rows(db, "SELECT metric, COUNT(*) FROM observations GROUP BY metric")
    assert dict(rows) == {"figure_of_merit": 6, "stability": 6}
    jobs = http(f"http://127.0.0.1:{port}/jobs")
    assert sum(j["state"] == "done" for j in jobs) == 6


def test_robot_failures_are_reported_with_reasons_and_retried(tmp_path: Path, procs: Procs) -> None:
    _, port = robot(procs, "--latency", "0.1", "--fail-rate", "0.4", "--seed", "4")
    # Sobol: this is about the robot's failures reaching the database, not about modelling
    # them (test_engine_strategies does that); GP fits made it take ~55 s of its 90 s
    spec = campaign(
        tmp_path,
        budget={"trials": 8, "max_failed": 20},
        execution={"retries": 5},
        strategy={"method": "sobol"},
    )
    ctl, db = start(procs, tmp_path, port, spec)
    assert procs.exit_code(ctl, 90) == 0, procs.log("controller.log")
    assert completed(db) == 8
    reasons = [
        json.loads(p)
        for (p,) in db_rows(db, "SELECT payload FROM events WHERE kind = 'trial_failed'")
    ]
    assert reasons, "with a 40 % fail rate some jobs must fail"
    for r in reasons:
        assert r["reason"] in ("robot: clogged nozzle", "robot: out of precursor")
        assert r["retryable"] == (r["reason"] == "robot: clogged nozzle")
        assert r["status"] == ("proposed" if r["retryable"] else "failed")


def test_cancel_reaches_the_robot(tmp_path: Path, procs: Procs) -> None:
    _, port = robot(procs, "--latency", "5")
    spec = campaign(tmp_path, execution={"trial_timeout": 1, "retries": 0}, budget={"trials": 2})
    start(procs, tmp_path, port, spec)
    wait_for(
        lambda: any(j["state"] == "cancelled" for j in http(f"http://127.0.0.1:{port}/jobs")),
        20,
        "a job cancelled on the robot",
    )
    db = tmp_path / "films.db"
    assert (
        count(
            db,
            "SELECT COUNT(*) FROM events WHERE kind = 'trial_interrupted' AND "
            "payload LIKE '%timed out%'",
        )
        >= 1
    )


def test_emergency_stop_and_reset(tmp_path: Path, procs: Procs) -> None:
    _, port = robot(procs, "--latency", "1.0")
    status = f"http://127.0.0.1:{port}/status"
    ctl, db = start(procs, tmp_path, port, campaign(tmp_path, budget={"trials": 6}))
    wait_for(lambda: completed(db) >= 1, 30, "a first result")
    wait_for(lambda: http(status)["running"] > 0, 10, "a running job")
    http(f"http://127.0.0.1:{port}/estop", "POST")
    wait_for(
        lambda: (
            count(
                db,
                "SELECT COUNT(*) FROM events WHERE kind = 'trial_failed' AND "
                "payload LIKE '%emergency stop%'",
            )
            >= 1
        ),
        15,
        "aborted trials",
    )
    # the aborted trial is retried: the driver submits it, is refused, and waits (refused
    # twice: it is in its loop of waiting for the reset, not failing the trial)
    wait_for(lambda: http(status)["refused"] >= 2, 30, "the driver to wait for the reset")
    assert http(status)["state"] == "estop"
    jobs = http(f"http://127.0.0.1:{port}/jobs")
    assert not [j for j in jobs if j["state"] in ("queued", "running")]
    # paused: every result is one the robot finished, none was made up while it is stopped
    assert completed(db) <= sum(j["state"] == "done" for j in jobs)
    refusals = (
        "SELECT COUNT(*) FROM events WHERE kind = 'trial_failed' AND payload LIKE '%refused%'"
    )
    assert count(db, refusals) == 0  # held back, not failed for good
    http(f"http://127.0.0.1:{port}/reset", "POST")
    assert procs.exit_code(ctl, 60) == 0, procs.log("controller.log")
    assert completed(db) == 6


def test_robot_server_killed_and_restarted(tmp_path: Path, procs: Procs) -> None:
    sim, port = robot(procs, "--latency", "0.5")
    ctl, db = start(procs, tmp_path, port, campaign(tmp_path, budget={"trials": 6}))
    wait_for(lambda: completed(db) >= 2, 30, "two results")
    sim.send_signal(signal.SIGKILL)
    procs.exit_code(sim, 5)
    lost = (
        "SELECT COUNT(*) FROM events WHERE kind = 'trial_failed' AND "
        "(payload LIKE '%lost the job%' OR payload LIKE '%unreachable%')"
    )
    # while it is down, the jobs in flight (or the next ones submitted) fail as retryable
    wait_for(lambda: count(db, lost) >= 1, 30, "a trial failed with the robot")
    robot(procs, "--latency", "0.5", port=port, log="sim2.log")  # back at its address
    assert procs.exit_code(ctl, 90) == 0, procs.log("controller.log")
    assert completed(db) == 6
