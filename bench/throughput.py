"""Cost per result over a long campaign, measured at the drivers.

Runs the real controller (`loopctl start`, Sobol, the zero-latency Branin oracle) and N
real SDK driver processes over tcp loopback. Each driver notes the wall-clock time at
which every task reached its ``evaluate``, so the rate is what drivers see, commits and
sends included (`bench/overhead.py` reads both of its timestamps from the database).

Prints, per run: trials/s over the first and the last thousand tasks and their ratio
(a controller whose cost per result grows with the campaign shows a ratio below 1);
the median gap from a driver's result to its next task; the controller's peak resident
memory and its growth per trial between the first and the last thousand; and, measured
in the same run, the floors: a ZeroMQ DEALER/ROUTER round trip and an SQLite WAL commit
at the run's ``synchronous`` setting.

    python bench/throughput.py [--drivers 8] [--trials 10000] [--sync FULL NORMAL]
                               [--profile controller.prof]
"""

from __future__ import annotations

import argparse
import itertools
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from overhead import ENV, free_endpoint, spec_file

WINDOW = 1000  # tasks in the first and last window compared


# ---------------------------------------------------------------------- driver side


def serve(endpoint: str, name: str, outbox: str, out: str) -> int:
    """One driver process: the oracle driver, noting when each task starts and ends."""
    from loopctl.drivers.oracle import OracleDriver

    class Timed(OracleDriver):
        def __init__(self, *a: Any, **k: Any) -> None:
            super().__init__(*a, **k)
            self.marks: list[tuple[float, float]] = []

        def evaluate(self, parameters: dict[str, Any]) -> Any:
            start = time.time()
            got = super().evaluate(parameters)
            self.marks.append((start, time.time()))
            return got

    drv = Timed(endpoint, name=name, outbox=outbox)
    code = drv.run()
    Path(out).write_text("\n".join(f"{a!r} {b!r}" for a, b in drv.marks))
    return code


# ---------------------------------------------------------------------- floors


def zmq_round_trip(n: int = 2000) -> float:
    """Median ms of a DEALER -> ROUTER -> DEALER echo over tcp loopback (two processes'
    worth of sockets in two threads of this one)."""
    import zmq

    ctx = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    dealer = ctx.socket(zmq.DEALER)
    dealer.connect(f"tcp://127.0.0.1:{port}")

    def echo() -> None:
        for _ in range(n):
            ident, body = router.recv_multipart()
            router.send_multipart([ident, body])

    th = threading.Thread(target=echo)
    th.start()
    times = []
    payload = b"x" * 200
    for _ in range(n):
        t = time.perf_counter()
        dealer.send(payload)
        dealer.recv()
        times.append(time.perf_counter() - t)
    th.join()
    dealer.close(0)
    router.close(0)
    ctx.term()
    return 1000 * statistics.median(times[n // 10 :])


def commit_floor(tmp: Path, sync: str, n: int = 300) -> float:
    """Median ms of one small INSERT + COMMIT in WAL mode, on the disk the campaign uses."""
    conn = sqlite3.connect(tmp / "floor.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {sync}")
    conn.execute("CREATE TABLE t (a INTEGER PRIMARY KEY, b TEXT)")
    times = []
    for i in range(n):
        t = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO t VALUES (?, ?)", (i, "x" * 200))
        conn.execute("COMMIT")
        times.append(time.perf_counter() - t)
    conn.close()
    return 1000 * statistics.median(times)


# ---------------------------------------------------------------------- one run


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def run_once(n_drivers: int, trials: int, sync: str, profile: str | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        ep, db = free_endpoint(), tmp / "bench.db"
        floors = {"zmq_rtt_ms": zmq_round_trip(), "commit_ms": commit_floor(tmp, sync)}
        prof = ["-m", "cProfile", "-o", profile] if profile else []
        spec = str(spec_file(tmp, trials, n_drivers, heartbeat_timeout=60))
        args = ["start", spec, "--db", str(db), "--bind", ep, "--sync", sync]
        ctl = subprocess.Popen(
            [sys.executable, *prof, "-m", "loopctl", *args],
            env=ENV,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        outs = [tmp / f"marks{i}.txt" for i in range(n_drivers)]
        drivers = [
            subprocess.Popen(
                [sys.executable, __file__, "--serve", ep, f"d{i}", str(tmp / f"ob{i}"), str(out)],
                env=ENV,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for i, out in enumerate(outs)
        ]
        samples: list[tuple[float, int]] = []  # (wall time, controller RSS KiB)
        err = b""
        try:
            chunks: list[bytes] = []

            def drain() -> None:
                assert ctl.stderr is not None
                chunks.append(ctl.stderr.read())

            reader = threading.Thread(target=drain)
            reader.start()
            while ctl.poll() is None:
                samples.append((time.time(), rss_kib(ctl.pid)))
                time.sleep(0.1)
            reader.join()
            err = b"".join(chunks)
            if ctl.returncode != 0:
                raise RuntimeError(err.decode())
        finally:
            for p in drivers:
                try:
                    p.wait(20)
                except subprocess.TimeoutExpired:
                    p.kill()
        per_driver = [
            [tuple(float(x) for x in line.split()) for line in out.read_text().splitlines()]
            for out in outs
            if out.exists()
        ]
        return dict(measure(per_driver, samples), **floors)


Marks = list[tuple[float, ...]]


def measure(per_driver: list[Marks], samples: list[tuple[float, int]]) -> dict[str, Any]:
    starts = sorted(m[0] for marks in per_driver for m in marks)
    w = min(WINDOW, len(starts) // 2)

    def rate(ts: list[float]) -> float:
        return (len(ts) - 1) / (ts[-1] - ts[0])

    first, last = rate(starts[:w]), rate(starts[-w:])
    # at each driver: from the end of one evaluation (its result about to be sent) to the
    # start of the next (its TASK received): the controller's share of a cycle
    gaps = [b[0] - a[1] for marks in per_driver for a, b in itertools.pairwise(marks)]

    def rss_at(t: float) -> int:
        got = [r for ts, r in samples if ts <= t and r]
        return got[-1] if got else 0

    rss_first, rss_last = rss_at(starts[w - 1]), rss_at(starts[-1])
    per_trial = 1024 * (rss_last - rss_first) / max(1, len(starts) - w)
    return {
        "first": first,
        "last": last,
        "ratio": last / first,
        "overall": rate(starts),
        "gap_ms": 1000 * statistics.median(gaps) if gaps else float("nan"),
        "peak_mib": max((r for _, r in samples), default=0) / 1024,
        "bytes_per_trial": per_trial,
        "n": len(starts),
    }


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        sys.exit(serve(*sys.argv[2:6]))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--drivers", type=int, nargs="+", default=[8])
    ap.add_argument("--trials", type=int, default=10_000)
    ap.add_argument("--sync", nargs="+", default=["FULL"])
    ap.add_argument(
        "--profile", metavar="FILE", help="cProfile the controller into FILE (one run only)"
    )
    args = ap.parse_args()
    print(
        "| sync | drivers | trials | first 1k /s | last 1k /s | last/first | overall /s | "
        "median gap (ms) | peak RSS (MiB) | RSS growth (B/trial) | ZMQ RTT (ms) | commit (ms) |"
    )
    print("| --- " * 12 + "|")
    for sync in args.sync:
        for n in args.drivers:
            r = run_once(n, args.trials, sync, args.profile)
            print(
                f"| {sync} | {n} | {r['n']} | {r['first']:.0f} | {r['last']:.0f} | "
                f"{r['ratio']:.2f} | {r['overall']:.0f} | {r['gap_ms']:.2f} | "
                f"{r['peak_mib']:.0f} | {r['bytes_per_trial']:.0f} | {r['zmq_rtt_ms']:.3f} | "
                f"{r['commit_ms']:.3f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
