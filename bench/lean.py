"""Lean processes: how long the reading commands take, what they import, and how much
memory a campaign's controller holds at its peak.

    python bench/lean.py [--out DIR] [--sizes 100 10000] [--runs 7] [--cold]
                         [--root CHECKOUT ...] [--skip-memory] [--memory-trials 40]

Builds (or reuses, in ``--out``) one campaign database per size with the real controller
(Sobol, the zero-latency Branin oracle, 8 spawned drivers, ``--sync NORMAL``: 10,000
trials in about half a minute), then times whole commands, interpreter start included:
``status``, ``export --format csv``, ``audit`` (no replay) and ``validate`` (of the
campaign file: its cost does not depend on the database), each through the venv's
``loopctl`` console script and through ``python -m loopctl``, as the median of ``--runs``
runs interleaved across commands and checkouts so that a burst of load hits them all.
A reading command leaves a verified checkpoint in the database (loopctl.verified) after
its first, full, check, and the later ones use it: the warm-up run makes it, so the times
are of a campaign read before. ``--cold`` also times the last checkout with the checkpoints
dropped before every run (a first read, or a campaign still running: the full check, and
the checkpoint's write).

Every ``--root`` is a checkout whose ``loopctl`` package is measured (``PYTHONPATH``), so a
before/after comparison runs in one go on the same load: ``git archive BASE loopctl
campaigns | tar -x -C /tmp/base`` then ``--root /tmp/base --root .``. Byte code is
compiled once into ``--out``'s cache (as an installed package has it), not per run.

Also: the top import costs of ``status`` by top-level package (``-X importtime``), the
heavy libraries it loads (none should be), and the peak resident memory of the controller
of a ``--memory-trials`` campaign with the default strategy (campaigns/branin.yaml,
3 oracle drivers started beside it), read from the kernel (``wait4``'s ``ru_maxrss``),
with the heavy libraries mapped into it (sampled from /proc/PID/maps), after a short
campaign run first to fill the byte-code cache (as an installed package has it).
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parents[1]
HEAVY: tuple[str, ...] = ("torch", "botorch", "gpytorch", "pandas", "pyarrow", "sklearn")
HEAVY += ("scipy", "sympy", "numpy", "zmq", "pymatgen", "pymoo", "matplotlib", "sqlite_utils")
TARGETS = {100: 0.3, 10_000: 0.5}  # seconds, issue 19 target 5
MEMORY_TARGET_MB = 350
WARM_UP_TRIALS = 12  # past the initial design: the GP, the forest and the acquisition run


def env_for(root: Path, out: Path) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(root), OPENBLAS_NUM_THREADS="1")
    env["OMP_WAIT_POLICY"] = "PASSIVE"
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # an installed package has its byte code
    env["PYTHONPYCACHEPREFIX"] = str(out / "pycache" / root.name)
    # run from there too: `python -m` puts the working directory ahead of PYTHONPATH
    Path(env["PYTHONPYCACHEPREFIX"]).mkdir(parents=True, exist_ok=True)
    return env


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def free_endpoint() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


# ---------------------------------------------------------------------- databases


def sobol_spec(out: Path, trials: int) -> Path:
    data = yaml.safe_load((HERE / "campaigns" / "branin.yaml").read_text())
    data["budget"] = {"trials": trials}
    data["strategy"] = {"method": "sobol"}
    data["execution"] = {"max_in_flight": 8, "heartbeat_interval": 1.0, "heartbeat_timeout": 60}
    path = out / f"sobol-{trials}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def completed(db: Path) -> int:
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            n = conn.execute("SELECT COUNT(*) FROM trials WHERE status = 'completed'")
            return int(n.fetchone()[0])
        finally:
            conn.close()
    except sqlite3.Error:
        return -1


def database(out: Path, trials: int, env: dict[str, str]) -> tuple[Path, Path]:
    """A finished Sobol campaign of ``trials`` trials, built once and kept in ``out``."""
    spec, db = sobol_spec(out, trials), out / f"sobol-{trials}.db"
    if db.exists() and completed(db) == trials:
        return spec, db
    for stale in out.glob(f"sobol-{trials}.db*"):
        stale.unlink()
    t = time.perf_counter()
    build = ["start", str(spec), "--db", str(db), "--spawn-drivers", "8", "--sync", "NORMAL"]
    subprocess.run(
        [sys.executable, "-m", "loopctl", *build, "--bind", free_endpoint()],
        env=env,
        cwd=out,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    print(f"built {db.name} in {time.perf_counter() - t:.0f} s", flush=True)
    return spec, db


# ---------------------------------------------------------------------- command times


def commands(spec: Path, db: Path) -> dict[str, list[str]]:
    return {
        "status": ["status", str(db)],
        "export csv": ["export", str(db), "--format", "csv"],
        "audit": ["audit", str(db)],
        "validate": ["validate", str(spec)],
    }


def launchers() -> dict[str, list[str]]:
    script = Path(sys.executable).with_name("loopctl")
    out = {"python -m loopctl": [sys.executable, "-m", "loopctl"]}
    if script.exists():
        out = {"loopctl script": [str(script)], **out}
    return out


def timed(argv: list[str], env: dict[str, str]) -> float:
    t = time.perf_counter()
    done = subprocess.run(
        argv,
        env=env,
        cwd=env["PYTHONPYCACHEPREFIX"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    took = time.perf_counter() - t
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: exit {done.returncode}: {done.stderr[-500:]!r}")
    return took


def forget_checkpoints(db: Path) -> None:
    """Drop the verified checkpoints (loopctl.verified) a reading command left: its next
    run makes the full check, as the first read of a campaign, or one still running, does."""
    conn = sqlite3.connect(db)
    try:
        conn.execute("DELETE FROM verified")
        conn.commit()
    except sqlite3.OperationalError:  # no such table: none was ever written
        pass
    finally:
        conn.close()


def time_commands(
    roots: list[Path], dbs: dict[int, tuple[Path, Path]], runs: int, out: Path, cold: bool
) -> dict[tuple[str, str, str, int], list[float]]:
    """(checkout, launcher, command, size) -> seconds of each run. ``cold``: also the last
    checkout with no checkpoint in the database at each run (named ``NAME cold``)."""
    plan = [
        (root, "", lname, cname, size, db, [*launch, *argv])
        for root in roots
        for lname, launch in launchers().items()
        for size, (spec, db) in dbs.items()
        for cname, argv in commands(spec, db).items()
    ]
    if cold:
        plan += [
            (root, " cold", lname, cname, size, db, argv)
            for root, _, lname, cname, size, db, argv in plan
            if root == roots[-1] and cname != "validate"  # validate reads no database
        ]
    for root, _, _, _, _, _, argv in plan:  # warm: byte code, pages in the file cache
        timed(argv, env_for(root, out))
    got: dict[tuple[str, str, str, int], list[float]] = {}
    for _ in range(runs):
        for root, temp, lname, cname, size, db, argv in plan:
            if temp:
                forget_checkpoints(db)
            key = ((root.name or str(root)) + temp, lname, cname, size)
            got.setdefault(key, []).append(timed(argv, env_for(root, out)))
            if temp:  # checkpointed again, whatever the cold run managed, for the warm ones
                timed(argv, env_for(root, out))
    return got


# ---------------------------------------------------------------------- imports


LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")


def import_profile(root: Path, argv: list[str], out: Path) -> tuple[float, list[tuple[str, float]]]:
    """Total import time (ms) and per top-level package (ms of their own code), largest
    first, of one command (the best of three, to shed a burst of load)."""
    best: tuple[float, list[tuple[str, float]]] | None = None
    for _ in range(3):
        done = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "loopctl", *argv],
            env=env_for(root, out),
            cwd=out,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        per: dict[str, float] = {}
        for m in LINE.finditer(done.stderr):
            top = m.group(4).split(".")[0]
            per[top] = per.get(top, 0.0) + int(m.group(1)) / 1000
        total = sum(per.values())
        if best is None or total < best[0]:
            best = total, sorted(per.items(), key=lambda kv: -kv[1])
    assert best is not None
    return best


# ---------------------------------------------------------------------- controller memory


def mapped_packages(pid: int) -> set[str]:
    """The heavy libraries whose files (extension modules) a process has mapped."""
    try:
        text = Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return set()
    return {h for h in HEAVY if f"/site-packages/{h}/" in text or f"/{h}.libs/" in text}


def controller_peak(root: Path, trials: int, out: Path) -> tuple[float, float, set[str]]:
    """Peak RSS (MiB) and wall seconds of the controller of a default-strategy campaign."""
    data = yaml.safe_load((HERE / "campaigns" / "branin.yaml").read_text())
    data["budget"] = {"trials": trials}
    spec = out / f"default-{trials}.yaml"
    spec.write_text(yaml.safe_dump(data, sort_keys=False))
    db = out / f"memory-{root.name}.db"
    for stale in out.glob(f"{db.name}*"):
        stale.unlink()
    env, ep = env_for(root, out), free_endpoint()
    t = time.perf_counter()
    ctl = subprocess.Popen(
        [sys.executable, "-m", "loopctl", "start", str(spec), "--db", str(db), "--bind", ep],
        env=env,
        stdout=subprocess.DEVNULL,
    )
    driver = [sys.executable, "-m", "loopctl", "driver", "oracle", "--connect", ep]
    drivers = [
        subprocess.Popen(
            [*driver, "--name", f"d{i}", "--outbox", str(out / f"outbox-{i}")],
            env=env,
            cwd=out,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for i in range(3)
    ]
    seen: set[str] = set()
    while True:
        pid, status, usage = os.wait4(ctl.pid, os.WNOHANG)
        if pid:
            break
        seen |= mapped_packages(ctl.pid)
        time.sleep(0.2)
    ctl.returncode = os.waitstatus_to_exitcode(status)
    for d in drivers:
        d.wait(60)
    if ctl.returncode != 0:
        raise RuntimeError(f"controller exited {ctl.returncode}")
    return usage.ru_maxrss / 1024, time.perf_counter() - t, seen


# ---------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/lean", help="databases and byte code, kept")
    ap.add_argument("--sizes", type=int, nargs="+", default=[100, 10_000])
    ap.add_argument("--runs", type=int, default=7, help="timed runs per command")
    ap.add_argument("--root", action="append", help="checkout to measure (repeatable)")
    ap.add_argument(
        "--cold",
        action="store_true",
        help="also time the last checkout with the database's verified checkpoints dropped "
        "before every run (a first read; a campaign still running)",
    )
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--only-memory", action="store_true", help="no databases, no timing")
    ap.add_argument("--memory-trials", type=int, default=40)
    args = ap.parse_args()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    roots = [Path(r).resolve() for r in args.root or [str(HERE)]]
    print(f"load before: {load()}", flush=True)
    if not args.only_memory:
        dbs = {n: database(out, n, env_for(roots[-1], out)) for n in args.sizes}

        times = time_commands(roots, dbs, args.runs, out, args.cold)
        print(f"\nload after timing: {load()}\n")
        print("| checkout | launcher | command | trials | median s | min s | target s |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for (checkout, lname, cname, size), ts in times.items():
            target = TARGETS.get(size, float("nan"))
            med = statistics.median(ts)
            flag = "" if med <= target else " (over)"
            print(
                f"| {checkout} | {lname} | {cname} | {size} | {med:.3f}{flag} | {min(ts):.3f} | "
                f"{target} |"
            )

        print("\nimport time of `status` (the smallest database), ms of each package's own code:")
        _, db = dbs[min(dbs)]
        for root in roots:
            total, per = import_profile(root, ["status", str(db)], out)
            heavy = [name for name, _ in per if name in HEAVY]
            top = ", ".join(f"{name} {ms:.0f}" for name, ms in per[:8])
            print(f"- {root.name}: {total:.0f} ms in all; heavy: {heavy or 'none'}; top: {top}")

    if not args.skip_memory:
        print(f"\ncontroller of a {args.memory_trials}-trial default-strategy campaign:")
        print("| checkout | peak RSS MiB | target MB | wall s | heavy libraries mapped |")
        print("| --- | --- | --- | --- | --- |")
        for root in roots:
            # first a short campaign that compiles every module the model imports (into
            # the byte-code cache): compiling them in the measured run raised its peak
            controller_peak(root, WARM_UP_TRIALS, out)
            mib, wall, seen = controller_peak(root, args.memory_trials, out)
            print(
                f"| {root.name} | {mib:.0f} | {MEMORY_TARGET_MB} | {wall:.0f} | "
                f"{', '.join(sorted(seen)) or 'none'} |",
                flush=True,
            )
    print(f"\nload at the end: {load()}")


if __name__ == "__main__":
    main()
