"""The dashboard tells whether a controller runs without touching the campaign's lock: a
controller starts while a dashboard is polled as fast as it answers, and the page's answer
follows the controller's life (no browser needed)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from loopctl import Campaign
from loopctl.dashboard import liveness
from loopctl.dashboard.liveness import controller_running
from tests.conftest import ENV, TCP_ANY, Procs, count, scaled
from tests.specs import branin

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")


HOLD = (
    "import sys\n"
    "from loopctl import Campaign\n"
    "with Campaign.open(sys.argv[1]):\n"
    "    print('held', flush=True)\n"
    "    sys.stdin.read()\n"
)


@pytest.mark.parametrize("proc_locks", [True, False], ids=["proc-locks", "lock-file-pid"])
def test_liveness_follows_the_writer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, proc_locks: bool
) -> None:
    if not proc_locks:  # a system without /proc/locks: the holder the lock file names
        monkeypatch.setattr(liveness, "PROC_LOCKS", tmp_path / "no-such-file")
    spec = branin(tmp_path, strategy={"method": "sobol"})
    db = str(tmp_path / "c.db")
    assert not controller_running(db)  # no database, no lock file
    with Campaign.create(spec, db):
        pass
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, db], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=ENV
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"held\n"
        assert controller_running(db)
    finally:
        holder.communicate(b"", timeout=scaled(30))
    assert holder.returncode == 0
    assert not controller_running(db)  # the lock file and the pid it names stay behind


def _summary(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url + "api/summary", timeout=scaled(10)) as r:
        return dict(json.loads(r.read()))


@pytest.mark.slow
def test_a_controller_starts_while_a_dashboard_is_polled(tmp_path: Path, procs: Procs) -> None:
    from tests.test_dashboard import dashboard

    spec = branin(tmp_path, strategy={"method": "sobol"}, budget={"trials": 3})
    db = tmp_path / "live.db"
    with Campaign.create(spec, db):
        pass  # a stopped campaign: the dashboard opens it before any controller
    url, _ = dashboard(procs, db)
    seen: list[tuple[float, bool]] = []  # (when the request was sent, the answer)
    stop = threading.Event()
    errors: list[BaseException] = []

    def poll() -> None:  # every answer runs the dashboard's liveness check
        try:
            while not stop.is_set():
                sent = time.monotonic()
                seen.append((sent, _summary(url)["controller"]["running"]))
        except BaseException as exc:  # reported by the test below
            errors.append(exc)

    pollers = [threading.Thread(target=poll, daemon=True) for _ in range(2)]
    for t in pollers:
        t.start()
    try:
        ctl = procs.start("-v", "resume", str(db), "--bind", TCP_ANY, log="controller.log")
        procs.driver(procs.endpoint(ctl), "d1")
        procs.wait_for(
            lambda: any(r for _, r in seen), 30, "the dashboard to see the controller", ctl
        )
        assert procs.exit_code(ctl, 60) == 0, procs.log("controller.log")
        ended = time.monotonic()
        assert count(db, "SELECT COUNT(*) FROM trials WHERE status = 'completed'") == 3

        def after() -> list[bool]:  # answers to requests sent once the controller had exited
            return [r for t, r in list(seen) if t > ended]

        procs.wait_for(lambda: len(after()) > 2, 30, "answers after the controller ended")
    finally:
        stop.set()
        for t in pollers:
            t.join(scaled(10))
    assert not errors, errors
    # A request sent while the controller ran may be answered after it exits (the answer
    # waited on the controller's heartbeats): order by sending, not by answering.
    assert min(seen)[1] is False and not any(after())
    assert not _summary(url)["controller"]["running"]
