"""Start and stop local driver processes for `--spawn-drivers` and `loopctl demo`."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path


def spawn_drivers(
    endpoint: str, n: int, db: str, kind: str = "oracle"
) -> list[subprocess.Popen[bytes]]:
    """Each driver gets a stable name, an outbox and a log file beside the database
    (``DB.drivers/NAME/``), so a driver restarted by hand with the same --name and
    --outbox finds its unacknowledged results, and its errors are not lost."""
    procs = []
    for i in range(1, n + 1):
        name = f"{kind}-{i}"
        home = Path(str(db) + ".drivers") / name
        home.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable,
            "-m",
            "loopctl",
            "driver",
            kind,
            "--connect",
            endpoint,
            "--name",
            name,
            "--outbox",
            str(home / "outbox"),
        ]
        with open(home / "driver.log", "ab") as logf:
            procs.append(subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT))
    return procs


def stop_drivers(procs: list[subprocess.Popen[bytes]], timeout: float = 5.0) -> None:
    """Drivers normally exit on SHUTDOWN; anything left after ``timeout`` is terminated."""
    end = time.monotonic() + timeout
    for p in procs:
        try:
            p.wait(max(0.0, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.terminate()
    for p in procs:
        try:
            p.wait(2.0)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
