"""Helpers for tests that run real processes over real sockets and real files."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
CAMPAIGNS = ROOT / "campaigns"
ENV = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE", PYTHONUNBUFFERED="1")
# how much slower than an idle machine this one may be: every positive wait is scaled by it
# (a wait that succeeds returns at once, so a generous scale costs nothing when all is well)
SCALE = float(os.environ.get("LOOPCTL_TEST_SCALE", "3"))
# the longest a test may take on an idle machine before it is taken for a hang (scaled too)
TEST_TIMEOUT = 150.0
# any free port on loopback: the controller binds it and prints which (see Procs.endpoint);
# never a port found free by binding and closing it, which another process may take meanwhile
TCP_ANY = "tcp://127.0.0.1:*"
LISTENING = re.compile(r"controller listening on (\S+)")
STARTED = "SELECT COUNT(*) FROM events WHERE kind = 'controller_started'"


def scaled(seconds: float) -> float:
    return seconds * SCALE


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """pytest-timeout's limit scales with the machine like every other wait."""
    for item in items:
        if item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(scaled(TEST_TIMEOUT)))


@pytest.fixture
def ipc() -> Iterator[str]:
    """A fresh ipc endpoint: nothing else can hold it, and it never needs a free port; it
    stays the same across a controller's restarts. Under /tmp directly, since ipc paths
    are limited to about 100 characters."""
    with tempfile.TemporaryDirectory(prefix="lc-", dir="/tmp") as d:
        yield f"ipc://{d}/ctl"


def loopctl(
    *args: str, timeout: float = 120, check: bool = True, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the real CLI in a subprocess (``timeout``: on an idle machine; it is scaled)."""
    proc = subprocess.run(
        [sys.executable, "-m", "loopctl", *args],
        capture_output=True,
        text=True,
        timeout=scaled(timeout),
        env=ENV,
        cwd=cwd,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"loopctl {' '.join(args)} exited {proc.returncode}\n"
            f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        )
    return proc


class Procs:
    """Background processes of one test; all are killed at the end, whatever happens."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs: list[subprocess.Popen[str]] = []
        self.logs: dict[int, str] = {}  # pid -> its log's name

    def start(
        self, *args: str, log: str, env: dict[str, str] | None = None, module: str = "loopctl"
    ) -> subprocess.Popen[str]:
        out = open(self.tmp / log, "w")  # noqa: SIM115 - closed with the process
        p = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            env={**ENV, **(env or {})},
        )
        self.procs.append(p)
        self.logs[p.pid] = log
        return p

    def controller(
        self,
        spec: Path | str,
        db: Path,
        endpoint: str,
        *extra: str,
        log: str = "controller.log",
        env: dict[str, str] | None = None,
    ) -> subprocess.Popen[str]:
        return self.start(
            "-v", "start", str(spec), "--db", str(db), "--bind", endpoint, *extra, log=log, env=env
        )

    def driver(self, endpoint: str, name: str, *extra: str) -> subprocess.Popen[str]:
        return self.start(
            "-v",
            "driver",
            "oracle",
            "--connect",
            endpoint,
            "--name",
            name,
            "--outbox",
            str(self.tmp / f"{name}.outbox"),
            *extra,
            log=f"{name}.log",
        )

    def log(self, name: str) -> str:
        return (self.tmp / name).read_text()

    def tail(self, p: subprocess.Popen[str], chars: int = 4000) -> str:
        name = self.logs.get(p.pid)
        return f"{name}:\n{self.log(name)[-chars:]}" if name else ""

    def exit_code(self, p: subprocess.Popen[str], timeout: float) -> int:
        """Wait for ``p`` to end (``timeout``: on an idle machine; it is scaled); still
        running then is a failure that shows its log."""
        try:
            return p.wait(scaled(timeout))
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"still running after {scaled(timeout):g} s\n{self.tail(p)}"
            ) from None

    def wait_for(
        self, cond: Callable[[], bool], timeout: float, what: str, *alive: subprocess.Popen[str]
    ) -> None:
        """:func:`wait_for`, failing at once (with the log) if one of ``alive`` ends first."""

        def check() -> bool:
            if cond():
                return True
            for p in alive:
                if p.poll() is not None and not cond():
                    raise AssertionError(
                        f"waiting for {what}: it exited {p.returncode}\n{self.tail(p)}"
                    )
            return False

        wait_for(check, timeout, what)

    def endpoint(self, ctl: subprocess.Popen[str]) -> str:
        """The endpoint a controller bound, from the line it prints once it has (a driver
        may connect from then on; what it sends waits in the socket until the controller
        serves)."""
        found: list[str] = []

        def printed() -> bool:
            m = LISTENING.search(self.log(self.logs[ctl.pid]))
            if m:
                found.append(m.group(1))
            return bool(m)

        self.wait_for(printed, 60, "the controller to bind", ctl)
        return found[0]

    def serving(self, ctl: subprocess.Popen[str], db: Path, n: int = 1) -> None:
        """Wait until the controller's ``n``-th start is recorded: it has loaded what its
        strategy needs and answers from now on."""
        self.wait_for(lambda: count(db, STARTED) >= n, 60, "the controller to serve", ctl)

    def stop_all(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
                p.wait(scaled(5))


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    ps = Procs(tmp_path)
    try:
        yield ps
    finally:
        ps.stop_all()


def db_rows(db: Path, sql: str, *args: object) -> list[tuple[Any, ...]]:
    """Read a campaign database the way a user's sqlite3 would, while it is being written."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def count(db: Path, sql: str, *args: object) -> int:
    """A COUNT(*) query; 0 while the database or its tables do not exist yet."""
    if not db.exists():
        return 0
    try:
        return int(db_rows(db, sql, *args)[0][0])
    except sqlite3.OperationalError:
        return 0


def wait_for(cond: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``cond`` until it holds (``timeout``: on an idle machine; it is scaled)."""
    timeout = scaled(timeout)
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.05)
    if cond():  # the last look may come late on a busy machine, but it counts
        return
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
