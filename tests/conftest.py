"""Helpers for tests that run real processes over real sockets and real files."""

from __future__ import annotations

import os
import signal
import socket
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


def scaled(seconds: float) -> float:
    return seconds * SCALE


@pytest.fixture
def ipc() -> Iterator[str]:
    """A fresh ipc endpoint: nothing else can hold it, and it never needs a free port.
    Under /tmp directly, since ipc paths are limited to about 100 characters."""
    with tempfile.TemporaryDirectory(prefix="lc-", dir="/tmp") as d:
        yield f"ipc://{d}/ctl"


def free_endpoint() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


def loopctl(
    *args: str, timeout: float = 120, check: bool = True, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the real CLI in a subprocess."""
    proc = subprocess.run(
        [sys.executable, "-m", "loopctl", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
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

    def stop_all(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
                p.wait(5)


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
    timeout = scaled(timeout)
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
