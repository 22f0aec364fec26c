"""`loopctl driver parsl` with real processes: a controller, the driver, and Parsl's
interchange and worker pool (HighThroughputExecutor on LocalProvider, two workers)."""

from __future__ import annotations

import json
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from loopctl.errors import LoopctlError
from tests.conftest import ROOT, TCP_ANY, Procs, count, db_rows, loopctl, wait_for
from tests.specs import branin, branin_fn

pytestmark = pytest.mark.slow

COMPLETED = "SELECT COUNT(*) FROM trials WHERE status = 'completed'"
RUNNING = "SELECT COUNT(*) FROM trials WHERE status = 'running'"
BUSY = re.compile(r"HTEX-Worker-\d+-(\d+) .*Received executor task (\d+)")
# the driver's first tasks build the oracle on each of its two workers (executor task ids
# 1 and 2): under load they may still run when trials are leased, and a worker killed then
# loses a warm-up, not a trial (the flake seen at load 8-17: no FAILED report at all)
WARM_UPS = 2


def _spec(tmp: Path, trials: int, **execution: float) -> Path:
    return branin(
        tmp,
        strategy={"method": "sobol"},  # proposals are instant: the engine is what is tested
        budget={"trials": trials},
        execution={"max_in_flight": 2, "heartbeat_interval": 0.5, **execution},
    )


def _parsl(
    procs: Procs, endpoint: str, name: str, *extra: str, log: str | None = None
) -> subprocess.Popen[str]:
    return procs.start(
        "-v",
        "driver",
        "parsl",
        "--preset",
        "local",
        "--workers",
        "2",
        "--connect",
        endpoint,
        "--name",
        name,
        "--outbox",
        str(procs.tmp / f"{name}.outbox"),
        "--run-dir",
        str(procs.tmp / f"{name}.runinfo"),
        *extra,
        log=log or f"{name}.log",
    )


def _pools(tmp: Path) -> list[psutil.Process]:
    """The worker pools of this test's drivers, with their workers: LocalProvider detaches
    them from the driver; their command line names their log folder, in the run_dir."""
    found = []
    for p in psutil.process_iter():
        try:
            if "process_worker_pool" in " ".join(p.cmdline()[:2]) and str(tmp) in " ".join(
                p.cmdline()
            ):
                found += [p, *p.children(recursive=True)]
        except psutil.Error:
            continue
    return found


@pytest.fixture
def engine_cleanup(tmp_path: Path) -> Iterator[None]:
    """Worker pools outlive a SIGKILLed driver by up to HEARTBEAT_THRESHOLD: they end with
    the test instead. (The interchange is the driver's child: it ends with it.)"""
    yield
    for p in _pools(tmp_path):
        try:
            p.kill()
        except psutil.Error:
            pass


def _busy_worker(run_dir: Path) -> int | None:
    """The pid of a worker whose last log line is a trial it received (so it runs it now)."""
    for f in run_dir.rglob("worker_*.log"):
        lines = f.read_text().splitlines()
        m = BUSY.search(lines[-1]) if lines else None
        if m and int(m.group(2)) > WARM_UPS and psutil.pid_exists(int(m.group(1))):
            return int(m.group(1))
    return None


def _reports(log: str) -> list[dict[str, Any]]:
    return [
        json.loads(line.split("report RESULT ", 1)[1])
        for line in log.splitlines()
        if "report RESULT " in line
    ]


def test_campaign_completes_on_two_parsl_workers(
    tmp_path: Path, procs: Procs, engine_cleanup: None
) -> None:
    db = tmp_path / "p.db"
    ctl = procs.controller(_spec(tmp_path, 8, heartbeat_timeout=10), db, TCP_ANY)
    drv = _parsl(procs, procs.endpoint(ctl), "farm", "--latency", "0.3")
    assert procs.exit_code(ctl, 60) == 0, procs.tail(drv)
    assert procs.exit_code(drv, 30) == 0, procs.tail(drv)
    assert db_rows(db, "SELECT status, COUNT(*) FROM trials GROUP BY status") == [("completed", 8)]
    for x1, x2, y in db_rows(
        db,
        "SELECT json_extract(parameters, '$.x1'), json_extract(parameters, '$.x2'), o.value "
        "FROM trials t JOIN observations o ON o.trial_id = t.id",
    ):
        assert y == pytest.approx(branin_fn(x1, x2))  # computed on a worker, from WELCOME
    (capacity,) = db_rows(db, "SELECT capacity FROM drivers WHERE name = 'farm'")[0]
    assert capacity == 2  # the engine's worker count
    reports = _reports(procs.log("farm.log"))
    assert len(reports) == 8
    workers = {r["metadata"]["worker"] for r in reports}
    assert len(workers) == 2  # both workers computed: two trials ran at once
    assert all(str(drv.pid) not in w for w in workers)  # and not in the driver
    assert (tmp_path / "farm.runinfo").is_dir() and not (ROOT / "runinfo").exists()
    assert "INFO parsl" not in procs.log("farm.log")  # Parsl's chatter stays in its run_dir
    assert loopctl("audit", str(db)).returncode == 0


def test_worker_killed_mid_trial_is_retried(
    tmp_path: Path, procs: Procs, engine_cleanup: None
) -> None:
    db = tmp_path / "w.db"
    ctl = procs.controller(_spec(tmp_path, 6, heartbeat_timeout=10, retries=2), db, TCP_ANY)
    _parsl(procs, procs.endpoint(ctl), "farm", "--latency", "1.5")
    run_dir = tmp_path / "farm.runinfo"
    found: list[int] = []

    def busy() -> bool:
        pid = _busy_worker(run_dir) if count(db, RUNNING) else None
        found[:] = [pid] if pid else []
        return bool(found)

    procs.wait_for(busy, 60, "a worker to run a trial", ctl)
    psutil.Process(found[0]).kill()
    assert procs.exit_code(ctl, 60) == 0, procs.log("farm.log")
    log = procs.log("farm.log")
    failed = [line for line in log.splitlines() if "report FAILED" in line]
    assert len(failed) == 1, log
    body = json.loads(failed[0].split("report FAILED ", 1)[1])
    assert body["retryable"] is True and "WorkerLost" in body["reason"]
    assert count(db, COMPLETED) == 6  # the exact budget: the lost trial ran again
    assert count(db, "SELECT COUNT(*) FROM events WHERE kind = 'trial_completed'") == 6
    assert db_rows(db, "SELECT attempts FROM trials WHERE id = ?", body["trial"]) == [(2,)]
    assert loopctl("audit", str(db)).returncode == 0


def test_driver_killed_and_restarted_loses_and_repeats_nothing(
    tmp_path: Path, procs: Procs, engine_cleanup: None
) -> None:
    db = tmp_path / "k.db"
    # the heartbeat timeout is generous: only the killed driver, not a slow machine, may
    # cost a trial an attempt
    ctl = procs.controller(_spec(tmp_path, 8, heartbeat_timeout=10, retries=2), db, TCP_ANY)
    ep = procs.endpoint(ctl)
    first = _parsl(procs, ep, "farm", "--latency", "1.0", log="farm-1.log")
    procs.wait_for(
        lambda: count(db, COMPLETED) >= 2 and count(db, RUNNING) == 2,
        60,
        "two results, and two trials running on the engine",
        ctl,
    )
    interchange = [
        p for p in psutil.Process(first.pid).children() if "interchange" in " ".join(p.cmdline())
    ]
    assert interchange
    first.send_signal(signal.SIGKILL)
    procs.exit_code(first, 10)
    interrupted = db_rows(db, "SELECT id FROM trials WHERE status = 'running'")
    _parsl(procs, ep, "farm", "--latency", "1.0", log="farm-2.log")  # same name, same outbox
    assert procs.exit_code(ctl, 90) == 0, procs.log("farm-2.log")

    # the interchange died with its driver (PR_SET_PDEATHSIG): no engine is left serving it
    wait_for(lambda: not any(p.is_running() for p in interchange), 10, "the interchange to end")
    assert count(db, COMPLETED) == 8
    assert count(db, "SELECT COUNT(*) FROM trials WHERE status != 'completed'") == 0
    # no result recorded twice, none refused: each trial was reported by one run only
    assert count(db, "SELECT COUNT(*) FROM events WHERE kind = 'trial_completed'") == 8
    reported = _reports(procs.log("farm-1.log")) + _reports(procs.log("farm-2.log"))
    assert sorted(r["trial"] for r in reported) == sorted(
        t for (t,) in db_rows(db, "SELECT id FROM trials")
    )
    assert "not_holder" not in procs.log("farm-2.log")
    # what was running on the engine when the driver died went back to the queue, once
    for (tid,) in interrupted:
        kinds = [
            k
            for (k,) in db_rows(db, "SELECT kind FROM events WHERE trial_id = ? ORDER BY seq", tid)
        ]
        assert kinds.count("trial_interrupted") == 1 and kinds.count("trial_completed") == 1
    assert not list((tmp_path / "farm.outbox").rglob("*.json"))  # all acknowledged
    assert loopctl("audit", str(db)).returncode == 0


def test_slurm_preset_builds_its_config(tmp_path: Path) -> None:
    """SLURM cannot run here: the configuration the preset builds is what is checked."""
    from parsl.launchers import SrunLauncher
    from parsl.providers import SlurmProvider

    from loopctl.drivers.parsl_driver import slurm_config, worker_count

    config = slurm_config(
        partition="compute",
        walltime="02:30:00",
        nodes=4,
        workers_per_node=32,
        account="mat123",
        run_dir=tmp_path / "runinfo",
    )
    (htex,) = config.executors
    provider = htex.provider
    assert isinstance(provider, SlurmProvider) and isinstance(provider.launcher, SrunLauncher)
    assert (provider.partition, provider.walltime, provider.nodes_per_block) == (
        "compute",
        "02:30:00",
        4,
    )
    assert provider.account == "mat123" and provider.max_blocks == 1
    assert "export PATH=" in provider.worker_init
    assert htex.max_workers_per_node == 32
    assert worker_count(config) == 4 * 32  # the driver's capacity
    assert config.run_dir == str(tmp_path / "runinfo")


def test_config_file_must_define_config(tmp_path: Path) -> None:
    from loopctl.drivers.parsl_driver import config_from_file, worker_count

    good = tmp_path / "cfg.py"
    good.write_text(
        "from parsl.config import Config\n"
        "from parsl.executors import HighThroughputExecutor\n"
        "from parsl.providers import LocalProvider\n"
        "config = Config(executors=[HighThroughputExecutor(max_workers_per_node=3,\n"
        "    provider=LocalProvider(max_blocks=2))], run_dir='elsewhere')\n"
    )
    config = config_from_file(good, tmp_path / "rd")
    assert config.run_dir == str(tmp_path / "rd") and worker_count(config) == 6
    bad = tmp_path / "bad.py"
    bad.write_text("configuration = 1\n")
    with pytest.raises(LoopctlError, match="must define `config`"):
        config_from_file(bad, None)
    out = loopctl(
        "driver", "parsl", "--connect", "tcp://127.0.0.1:1", "--config", str(bad), check=False
    )
    assert out.returncode == 1 and "must define `config`" in out.stderr


def test_help_lists_parsl() -> None:
    kinds = loopctl("driver", "--help").stdout
    assert "parsl" in kinds and "dask" in kinds
    out = loopctl("driver", "parsl", "--preset", "slurm", "--connect", "tcp://h:1", check=False)
    assert out.returncode == 1 and "--preset slurm needs --partition" in out.stderr
    text = loopctl("driver", "parsl", "--help").stdout
    for flag in ("--preset", "--config", "--workers", "--partition", "--walltime", "--nodes"):
        assert flag in text
