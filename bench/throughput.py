"""Cost per result over a long campaign, measured at the drivers.

Runs the real controller (`loopctl start`, Sobol, the zero-latency Branin oracle) and N
real SDK driver processes over tcp loopback. Each driver notes the wall-clock time at
which every task reached its ``evaluate``, so the rate is what drivers see, commits and
sends included (`bench/overhead.py` reads both of its timestamps from the database).

Prints, per run: trials/s over the first and the last thousand tasks and their ratio
(a controller whose cost per result grows with the campaign shows a ratio below 1);
the median gap from a driver's result to its next task; the CPU time of one trial in
steady state (start-up and imports left out), the controller's and all drivers' together,
and from it the most trials/s that two cores could run; the controller's peak resident
memory and its growth per trial between the first and the last thousand; and, measured
in the same run, the floors: a ZeroMQ DEALER/ROUTER round trip, an SQLite WAL commit at
the run's ``synchronous`` setting, and a driver's outbox (a result kept, fsynced, before
it is sent, and dropped on its ACK). The machine's load average is printed with each row.

``--against CHECKOUT`` runs every case with another checkout's loopctl as well, in turns,
so that a change is measured as a ratio under one load; ``--spy DIR`` samples the
controller and the first driver with py-spy (read with ``bench/stacks.py``).

    python bench/throughput.py [--drivers 1 8 32 64] [--trials 10000] [--sync FULL NORMAL]
                               [--against ../main] [--repeat 2] [--spy DIR]
                               [--profile controller.prof]
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
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
            self.cpu: list[float] = []  # its CPU time (all threads) at the first and last task

        def evaluate(self, parameters: dict[str, Any]) -> Any:
            start = time.time()
            self.cpu[1:] = [time.process_time()]
            if len(self.cpu) == 1:
                self.cpu.append(self.cpu[0])
            got = super().evaluate(parameters)
            self.marks.append((start, time.time()))
            return got

    drv = Timed(endpoint, name=name, outbox=outbox)
    code = drv.run()
    Path(out).write_text("\n".join(f"{a!r} {b!r}" for a, b in drv.marks))
    # steady state only: from its first task to its last, without start-up and imports
    if drv.cpu:
        Path(out + ".cpu").write_text(f"{drv.cpu[1] - drv.cpu[0]!r} {len(drv.marks) - 1}")
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


def outbox_floor(tmp: Path, n: int = 100) -> float:
    """Median ms of what a driver's SDK does on disk for one result: keep it in its outbox
    (fsynced before it is sent) and drop it on the ACK."""
    from loopctl import protocol
    from loopctl.drivers.base import Outbox

    box = Outbox(tmp / "floor-outbox")
    times = []
    for i in range(n):
        msg = protocol.make(
            "RESULT",
            trial=f"T{i:04d}",
            outcomes={"y": 1.0 + i},
            metadata={"attempt": 1},
            campaign_id="c" * 32,
            spec_hash="0" * 64,
        )
        t = time.perf_counter()
        box.put("campaign", f"T{i:04d}", msg)
        box.ack("campaign", "d", {"trial": f"T{i:04d}"})
        times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times)


# ---------------------------------------------------------------------- one run


Sample = tuple[float, int, float]  # wall time, controller RSS (KiB), its CPU seconds


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (all its threads)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def spy_prefix(spy_dir: str | None, name: str) -> list[str]:
    """The command line that runs a process under py-spy (sampling, so the figures are
    what the process costs without a profiler's own overhead), writing collapsed stacks."""
    if spy_dir is None:
        return []
    exe = shutil.which("py-spy") or os.environ.get("PY_SPY", "")
    if not exe:
        raise SystemExit("--spy needs py-spy on PATH (or its path in PY_SPY)")
    out = Path(spy_dir) / f"{name}.txt"
    return [exe, "record", "-r", "997", "-f", "raw", "-o", str(out), "--"]


def run_once(
    n_drivers: int,
    trials: int,
    sync: str,
    profile: str | None = None,
    spy_dir: str | None = None,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """One campaign; ``env``: the controller's and drivers' environment (its PYTHONPATH
    says which loopctl is measured)."""
    env = env or ENV
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        ep, db = free_endpoint(), tmp / "bench.db"
        floors = {
            "zmq_rtt_ms": zmq_round_trip(),
            "commit_ms": commit_floor(tmp, sync),
            "outbox_ms": outbox_floor(tmp),
        }
        prof = ["-m", "cProfile", "-o", profile] if profile else []
        spy = spy_prefix(spy_dir, f"controller-{sync}-{n_drivers}")
        spec = str(spec_file(tmp, trials, n_drivers, heartbeat_timeout=60))
        args = ["start", spec, "--db", str(db), "--bind", ep, "--sync", sync]
        ctl = subprocess.Popen(
            [*spy, sys.executable, *prof, "-m", "loopctl", *args],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        outs = [tmp / f"marks{i}.txt" for i in range(n_drivers)]
        drivers = [
            subprocess.Popen(
                [
                    *(spy_prefix(spy_dir, f"driver-{sync}-{n_drivers}") if i == 0 else []),
                    sys.executable,
                    __file__,
                    "--serve",
                    ep,
                    f"d{i}",
                    str(tmp / f"ob{i}"),
                    str(out),
                ],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for i, out in enumerate(outs)
        ]
        samples: list[Sample] = []
        err = b""
        try:
            chunks: list[bytes] = []

            def drain() -> None:
                assert ctl.stderr is not None
                chunks.append(ctl.stderr.read())

            reader = threading.Thread(target=drain)
            reader.start()
            while ctl.poll() is None:
                samples.append((time.time(), rss_kib(ctl.pid), cpu_s(ctl.pid)))
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
        drivers_cpu = 0.0
        for out in outs:
            if Path(f"{out}.cpu").exists():
                seconds = Path(f"{out}.cpu").read_text().split()[0]
                drivers_cpu += float(seconds)
        got = measure(per_driver, samples)
        # all drivers' CPU over all their tasks: the drivers' share of one trial
        cpu = {"drv_cpu_ms": 1000 * drivers_cpu / max(1, got["n"] - len(outs))}
        return dict(got, **floors, **cpu)


Marks = list[tuple[float, ...]]


def measure(per_driver: list[Marks], samples: list[Sample]) -> dict[str, Any]:
    starts = sorted(m[0] for marks in per_driver for m in marks)
    w = min(WINDOW, len(starts) // 2)

    def rate(ts: list[float]) -> float:
        return (len(ts) - 1) / (ts[-1] - ts[0])

    first, last = rate(starts[:w]), rate(starts[-w:])
    # at each driver: from the end of one evaluation (its result about to be sent) to the
    # start of the next (its TASK received): the controller's share of a cycle
    gaps = [b[0] - a[1] for marks in per_driver for a, b in itertools.pairwise(marks)]

    def rss_at(t: float) -> int:
        got = [r for ts, r, _ in samples if ts <= t and r]
        return got[-1] if got else 0

    def cpu_at(t: float) -> tuple[float, float]:  # (sample time, controller CPU s)
        got = [(ts, c) for ts, _, c in samples if ts <= t]
        return got[-1] if got else (t, float("nan"))

    # the controller's CPU in steady state, between samples at the first and the last task
    (t0, c0), (t1, c1) = cpu_at(starts[0]), cpu_at(starts[-1])
    in_between = sum(1 for s in starts if t0 < s <= t1)

    rss_first, rss_last = rss_at(starts[w - 1]), rss_at(starts[-1])
    per_trial = 1024 * (rss_last - rss_first) / max(1, len(starts) - w)
    return {
        "first": first,
        "last": last,
        "ratio": last / first,
        "overall": rate(starts),
        "gap_ms": 1000 * statistics.median(gaps) if gaps else float("nan"),
        "peak_mib": max((r for _, r, _ in samples), default=0) / 1024,
        "ctl_cpu_ms": 1000 * (c1 - c0) / max(1, in_between),
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
    ap.add_argument(
        "--spy",
        metavar="DIR",
        help="sample the controller and the first driver with py-spy, collapsed stacks "
        "into DIR (read them with bench/stacks.py)",
    )
    ap.add_argument(
        "--against",
        metavar="CHECKOUT",
        help="also run each case with the loopctl of another checkout (its PYTHONPATH), "
        "interleaved, rows marked 'before': a comparison in one run, under one load",
    )
    ap.add_argument("--repeat", type=int, default=1, help="runs of each case")
    args = ap.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.2f}", flush=True)
    print(
        "| code | sync | drivers | trials | first 1k /s | last 1k /s | last/first | "
        "overall /s | median gap (ms) | ctl CPU (ms/trial) | drivers CPU (ms/trial) | "
        "2-core limit /s | peak RSS (MiB) | RSS growth (B/trial) | ZMQ RTT (ms) | "
        "commit (ms) | outbox (ms) | load |"
    )
    print("| --- " * 18 + "|")
    codes = [("this", ENV)]
    if args.against:
        before = dict(ENV, PYTHONPATH=str(Path(args.against).resolve()))
        codes.insert(0, ("before", before))
    for sync in args.sync:
        for n in args.drivers:
            for _ in range(args.repeat):
                for code, env in codes:
                    r = run_once(n, args.trials, sync, args.profile, args.spy, env)
                    cpu = r["ctl_cpu_ms"] + r["drv_cpu_ms"]
                    print(
                        f"| {code} | {sync} | {n} | {r['n']} | {r['first']:.0f} | "
                        f"{r['last']:.0f} | {r['ratio']:.2f} | {r['overall']:.0f} | "
                        f"{r['gap_ms']:.2f} | {r['ctl_cpu_ms']:.2f} | {r['drv_cpu_ms']:.2f} | "
                        f"{2000 / cpu if cpu else float('nan'):.0f} | {r['peak_mib']:.0f} | "
                        f"{r['bytes_per_trial']:.0f} | {r['zmq_rtt_ms']:.3f} | "
                        f"{r['commit_ms']:.3f} | {r['outbox_ms']:.2f} | "
                        f"{os.getloadavg()[0]:.1f} |",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
