"""`loopctl ...` commands: parse, call the library, print. Heavy imports stay inside commands
so that `status`, `export`, `validate` and `--help` never load torch."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sqlite3
import sys
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

from loopctl import __version__
from loopctl.errors import LoopctlError

EXAMPLE = Path(__file__).with_name("example-campaign.yaml")
DEMO = Path(__file__).resolve().parents[1] / "campaigns" / "alloy-mixing.yaml"
DEFAULT_BIND = "tcp://127.0.0.1:*"  # a free port on loopback, printed


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not hasattr(args, "func"):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:  # `loopctl audit DB | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except LoopctlError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # files: unwritable --out, vanished paths, full disks
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except sqlite3.Error as exc:  # a disk failing, or damage met after the checks on opening
        from loopctl.store import sqlite_failure

        db = getattr(args, "db", None)
        print(f"error: {sqlite_failure(db, exc) if db else exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _latency(text: str) -> str:
    from drivers.oracle import parse_latency

    try:
        parse_latency(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _needs_subcommand(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    parser.print_help(sys.stderr)
    return 2


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="loopctl",
        description="Closed-loop active-learning experiment controller for materials research: "
        "propose experiments with Bayesian optimisation, run them on drivers over "
        "ZeroMQ, record everything in a campaign database.",
    )
    p.add_argument("--version", action="version", version=f"loopctl {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log what happens (to stderr)")
    sub = p.add_subparsers(title="commands", metavar="COMMAND")

    c = sub.add_parser("init", help="write a commented example campaign file")
    c.add_argument(
        "file",
        nargs="?",
        default="campaign.yaml",
        help="where to write it (default: campaign.yaml)",
    )
    c.add_argument("--force", action="store_true", help="overwrite an existing file")
    c.set_defaults(func=cmd_init)

    c = sub.add_parser("validate", help="check a campaign file and print its summary")
    c.add_argument("file", help="campaign file (YAML)")
    c.set_defaults(func=cmd_validate)

    c = sub.add_parser(
        "start", help="create a campaign database and run the controller until the budget is used"
    )
    c.add_argument("file", help="campaign file (YAML)")
    c.add_argument("--db", required=True, help="campaign database to create (must not exist)")
    c.add_argument(
        "--import",
        dest="past",
        metavar="FILE.csv",
        help="earlier measurements to start from, as with `loopctl import` (before any proposal)",
    )
    _controller_options(c)
    c.set_defaults(func=cmd_start)

    c = sub.add_parser(
        "resume",
        help="carry on a stopped or crashed campaign from its database alone",
    )
    c.add_argument("db", metavar="PATH", help="campaign database")
    _controller_options(c)
    c.set_defaults(func=cmd_resume)

    c = sub.add_parser(
        "demo",
        help="run the embedded alloy-mixing campaign end to end (EMT oracle, two local drivers)",
    )
    c.add_argument("--db", help="database to create (default: runs/alloy-mixing-TIME.db)")
    c.add_argument("--trials", type=int, help="override the budget (default: the file's, 30)")
    c.add_argument(
        "--spawn-drivers",
        type=int,
        default=2,
        metavar="N",
        help="local oracle drivers to start (default: 2)",
    )
    c.set_defaults(func=cmd_demo)

    c = sub.add_parser("driver", help="run a driver that connects to a controller")
    c.set_defaults(func=partial(_needs_subcommand, c))
    dsub = c.add_subparsers(title="kinds", metavar="KIND")
    o = dsub.add_parser(
        "oracle",
        help="simulated DFT oracle: EMT alloy energies, benchmark functions or table look-up",
    )
    o.add_argument(
        "--oracle",
        choices=("emt", "function", "table"),
        help="what to compute (default: from the campaign file, sent in WELCOME)",
    )
    o.add_argument("--function", help="benchmark function for --oracle function (e.g. branin)")
    o.add_argument("--table", help="CSV for --oracle table")
    o.add_argument(
        "--latency",
        type=_latency,
        help="seconds added to each evaluation, or LOW..HIGH for a uniform jitter (0.1..0.3)",
    )
    o.add_argument("--noise", type=float, help="SD of Gaussian noise added to each outcome")
    o.add_argument("--fail-rate", type=float, help="probability that an evaluation fails")
    o.add_argument("--seed", type=int, help="seed for noise and failures")
    _driver_options(o)
    o.set_defaults(func=cmd_driver_oracle)
    rb = dsub.add_parser("robot", help="run campaign trials as jobs on a lab robot's HTTP API")
    rb.add_argument(
        "--robot-url", help="the robot's base URL (default: robot.url from the campaign file)"
    )
    rb.add_argument(
        "--config",
        metavar="FILE",
        help="YAML mapping of job fields and outcomes (default: the campaign's "
        "`robot:` section; see docs/drivers.md)",
    )
    _driver_options(rb)
    rb.set_defaults(func=cmd_driver_robot)
    hu = dsub.add_parser("human", help="a person enters results at this terminal")
    hu.add_argument(
        "--operator", required=True, help="who enters the results; recorded with every entry"
    )
    _driver_options(hu, capacity=False)
    hu.set_defaults(func=cmd_driver_human)

    for action, text in (
        ("approve", "let proposed trials be dispatched (execution.approval: manual)"),
        ("reject", "turn proposed trials down; they are never run nor proposed again"),
        ("suggest", "queue a candidate of your own (validated like any other)"),
        ("pause", "stop dispatching; trials in flight carry on"),
        ("unpause", "dispatch again after a pause"),
        ("amend", "correct a recorded result (the old value stays in the log, with your reason)"),
    ):
        c = sub.add_parser(action, help=text)
        c.add_argument("db", metavar="PATH", help="campaign database")
        if action in ("approve", "reject"):
            c.add_argument("trials", nargs="+", metavar="TRIAL", help="trial ids, e.g. T0007")
        if action == "amend":
            c.add_argument("trials", nargs=1, metavar="TRIAL", help="the trial, e.g. T0007")
            c.add_argument(
                "--set",
                dest="outcomes",
                action="append",
                required=True,
                metavar="NAME=VALUE",
                help="a corrected outcome (repeat for each; the others keep their values)",
            )
        if action in ("reject", "amend"):
            c.add_argument("--reason", required=True, help="why (kept with the trial)")
        if action == "suggest":
            c.add_argument(
                "--set",
                dest="values",
                action="append",
                required=True,
                metavar="NAME=VALUE",
                help="a parameter value (repeat for each; compositions as a "
                "formula, e.g. comp=Cu0.3Pd0.7)",
            )
        c.add_argument(
            "--operator", default=None, help="who is deciding (default: your login name); recorded"
        )
        c.set_defaults(func=cmd_operator, action=action)

    c = sub.add_parser(
        "robot-sim",
        help="serve a simulated thin-film synthesis robot over HTTP (for demos and tests)",
    )
    c.add_argument(
        "--port", type=int, default=8765, help="port on 127.0.0.1 (default: 8765; 0: any, printed)"
    )
    c.add_argument("--latency", type=float, default=2.0, help="seconds per job (default: 2)")
    c.add_argument("--fail-rate", type=float, default=0.0, help="probability a job fails")
    c.add_argument("--seed", type=int, default=0, help="seed of noise and failures")
    c.add_argument("--slots", type=int, default=2, help="jobs run at once (default: 2)")
    c.set_defaults(func=cmd_robot_sim)

    c = sub.add_parser("keys", help="CURVE key pairs for encrypted, authenticated connections")
    c.set_defaults(func=partial(_needs_subcommand, c))
    ksub = c.add_subparsers(title="actions", metavar="ACTION")
    k = ksub.add_parser("generate", help="make NAME.key (public) and NAME.key_secret (private)")
    k.add_argument("name", help="whose key: the controller's or a driver's name")
    k.add_argument("--out", required=True, metavar="DIR", help="folder to write the two files")
    k.set_defaults(func=cmd_keys_generate)

    c = sub.add_parser("status", help="trials by state, best so far, drivers, budget left")
    c.add_argument("db", metavar="PATH", help="campaign database")
    c.add_argument("--json", action="store_true", help="machine-readable output")
    c.set_defaults(func=cmd_status)

    c = sub.add_parser(
        "pending", help="proposals waiting for approval (execution.approval: manual)"
    )
    c.add_argument("db", metavar="PATH", help="campaign database")
    c.add_argument("--json", action="store_true", help="machine-readable output")
    c.set_defaults(func=cmd_pending)

    c = sub.add_parser(
        "audit",
        help="verify the hash chain and the tables against it; print the timeline and how "
        "each trial was chosen (exit 0 only if everything verifies)",
    )
    c.add_argument("db", metavar="PATH", help="campaign database")
    c.add_argument("--json", action="store_true", help="machine-readable output")
    c.add_argument(
        "--replay",
        action="store_true",
        help="also recompute every proposal from the recorded data and seed and say, proposal "
        "by proposal, whether the same candidates come out (loads the models: slower)",
    )
    c.add_argument(
        "--expect-head",
        metavar="HASH",
        help="a head hash printed by an earlier audit and kept elsewhere: fail unless this "
        "log still contains it (detects a rewritten or cut history)",
    )
    c.add_argument(
        "--receipts",
        metavar="DIR",
        type=Path,
        help="drivers' receipts (their outbox directories, or copies gathered in one "
        "place): fail if any acknowledged result or failure is no longer in the log, "
        "naming its trial (detects a lost WAL, a restored backup, a rewritten history)",
    )
    c.set_defaults(func=cmd_audit)

    c = sub.add_parser(
        "report",
        help="write a self-contained HTML report and PNG figures (best so far or Pareto front, "
        "parameters against each objective, model check, trials)",
    )
    c.add_argument("db", metavar="PATH", help="campaign database")
    c.add_argument("--out", default=None, help="folder to write to (default: PATH.report/)")
    c.set_defaults(func=cmd_report)

    c = sub.add_parser(
        "export", help="write one row per trial (parameters, outcomes, state, driver, timestamps)"
    )
    c.add_argument("db", metavar="PATH", help="campaign database")
    c.add_argument("--format", choices=("csv", "json", "parquet"), default="csv")
    c.add_argument("--out", help="file to write (default: standard output)")
    c.set_defaults(func=cmd_export)

    c = sub.add_parser(
        "import", help="add earlier measurements from a CSV as completed trials (origin: imported)"
    )
    c.add_argument("db", metavar="PATH", help="campaign database (its controller must be stopped)")
    c.add_argument(
        "csv",
        metavar="FILE.csv",
        help="one row per experiment; columns named after parameters and objectives "
        "(optional OBJECTIVE_sem columns; any other column is kept with the trial)",
    )
    c.add_argument(
        "--force", action="store_true", help="import rows even if they were imported before"
    )
    c.set_defaults(func=cmd_import)

    c = sub.add_parser(
        "backtest",
        help="replay strategies against past measurements over many seeds and score them "
        "(Top%%, EF and AF of Liang et al. 2021, regret); writes JSON, markdown and a PNG",
    )
    c.add_argument("file", help="campaign file (YAML): its space, pool and objective")
    c.add_argument(
        "--data",
        required=True,
        metavar="FILE.csv",
        help="measured outcomes, one row per experiment (replicates are averaged); the "
        "candidates are the campaign's pool, else every distinct row of this file",
    )
    c.add_argument(
        "--strategy",
        action="append",
        metavar="SPEC",
        help="a strategy to score: auto, random, sobol, botorch, ax, or LABEL=METHOD,key=value,"
        "... with strategy options, e.g. rf=auto,surrogate=rf (repeat it; default: auto and "
        "random)",
    )
    c.add_argument("--seeds", type=int, default=20, help="seeded runs per strategy (default: 20)")
    c.add_argument(
        "--budget", type=int, help="cycles per run (default: the campaign's budget.trials)"
    )
    c.add_argument("--batch", type=int, default=1, help="candidates per cycle (default: 1)")
    c.add_argument(
        "--initial",
        type=int,
        metavar="N",
        help="random initial trials (default: the campaign's; Liang et al. used 2)",
    )
    c.add_argument("--workers", type=int, help="runs at once (default: one per core)")
    c.add_argument(
        "--out",
        help="folder for runs.jsonl, summary.json, summary.md and top.png; a rerun "
        "skips the runs already there (default: backtest-NAME)",
    )
    c.add_argument(
        "--column",
        action="append",
        default=[],
        metavar="NAME=COLUMN",
        help="the CSV column of a parameter or the objective, where it is named differently",
    )
    c.set_defaults(func=cmd_backtest)
    return p


def _controller_options(c: argparse.ArgumentParser) -> None:
    c.add_argument(
        "--bind",
        metavar="ENDPOINT",
        help="where drivers connect (default: a free port on 127.0.0.1, printed; for resume, "
        "the endpoint the campaign last ran at, where its drivers are still knocking)",
    )
    c.add_argument(
        "--trials",
        type=int,
        metavar="N",
        help="override budget.trials (kept: resume goes on with it unless told otherwise)",
    )
    c.add_argument(
        "--spawn-drivers",
        type=int,
        metavar="N",
        help="start N local oracle drivers (default: drivers.spawn from the file; "
        "0 waits for drivers to connect)",
    )
    c.add_argument(
        "--sync",
        choices=("FULL", "NORMAL"),
        help="SQLite durability: FULL survives a power cut (default; resume: what the "
        "campaign last ran with), NORMAL only a crash of the process",
    )
    c.add_argument(
        "--curve-secret-key",
        metavar="FILE",
        help="the controller's CURVE secret key (NAME.key_secret); with --authorized-keys "
        "only drivers with a listed key can connect (default: security.curve_secret_key)",
    )
    c.add_argument(
        "--authorized-keys",
        metavar="DIR",
        help="folder of authorised drivers' public keys (*.key) (default: "
        "security.authorized_keys)",
    )
    c.add_argument(
        "--insecure",
        action="store_true",
        help="allow binding beyond loopback without CURVE (anyone who can reach the port "
        "can submit results)",
    )


def _driver_options(c: argparse.ArgumentParser, capacity: bool = True) -> None:
    c.add_argument(
        "--connect",
        required=True,
        metavar="ENDPOINT",
        help="controller endpoint, e.g. tcp://127.0.0.1:5555",
    )
    c.add_argument(
        "--name",
        help="unique driver name (default: KIND-HOST-PID); keep it across "
        "restarts so the outbox is found",
    )
    c.add_argument(
        "--key",
        metavar="FILE",
        help="this driver's CURVE secret key (NAME.key_secret), for a controller with CURVE on",
    )
    c.add_argument(
        "--server-key", metavar="FILE", help="the controller's public key (NAME.key), with --key"
    )
    if capacity:
        c.add_argument("--capacity", type=int, default=1, help="trials run at once (default: 1)")
    c.add_argument(
        "--outbox",
        help="folder for unacknowledged results (default: ~/.local/state/loopctl/outbox/NAME)",
    )


# ---------------------------------------------------------------------- commands


def cmd_init(args: argparse.Namespace) -> int:
    target = Path(args.file)
    if target.exists() and not args.force:
        raise LoopctlError(f"{target} exists; use --force to overwrite")
    target.write_text(EXAMPLE.read_text())
    print(f"wrote {target}; check it with: loopctl validate {target}")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from loopctl.spec import load_spec

    spec = load_spec(args.file)
    print(summarise_spec(spec))
    return 0


def summarise_spec(spec: Any) -> str:
    from loopctl.strategies import initial_design_size, model_plan

    lines = [f"campaign {spec.name!r} (seed {spec.seed}) is valid", "space:"]
    for p in spec.space:
        if p.type == "range":
            detail = f"[{p.low:g}, {p.high:g}]" + (" log" if p.log else "")
        elif p.type == "integer":
            detail = f"integers in [{p.low}, {p.high}]"
        elif p.type == "choice":
            detail = "one of " + ", ".join(map(str, p.values))
        elif p.type == "fixed":
            detail = f"fixed at {p.value!r}"
        elif p.type == "formula":
            detail = "a chemical formula, chosen from the pool"
        else:
            detail = "fractions of " + ", ".join(
                f"{e}[{lo:g}-{hi:g}]" for e, (lo, hi) in zip(p.elements, p.bounds, strict=True)
            )
        lines.append(f"  {p.name}: {p.type} {detail}")
    lines.append("objectives: " + ", ".join(f"{o.goal} {o.name}" for o in spec.objectives))
    lines.append(
        f"budget: {spec.budget.trials} trials"
        + (f", {spec.budget.wall_time:g} s" if spec.budget.wall_time else "")
    )
    method = spec.strategy.method
    if method == "sobol":
        lines.append("strategy: sobol (scrambled, seeded; random rows of a pool)")
    elif method == "ax":
        lines.append("strategy: ax (Ax's Client and its default generation strategy)")
    else:
        _, then = model_plan(spec)
        lines.append(
            f"strategy: {method} ({initial_design_size(spec)} initial trials, then {then})"
        )
    lines.append(
        f"execution: up to {spec.execution.max_in_flight} in flight, "
        f"{spec.execution.retries} retries"
    )
    if spec.oracle:
        what = spec.oracle.function or spec.oracle.table or "EMT alloy energies"
        lines.append(f"oracle: {spec.oracle.kind} ({what}); spawn {spec.drivers.spawn} drivers")
    return "\n".join(lines)


def cmd_start(args: argparse.Namespace) -> int:
    from loopctl.spec import load_spec

    spec = load_spec(args.file)
    return run_campaign(
        spec,
        args.db,
        bind=args.bind or DEFAULT_BIND,
        trials=args.trials,
        spawn=args.spawn_drivers,
        sync=args.sync or "FULL",
        security=args,
        past=args.past,
    )


def cmd_demo(args: argparse.Namespace) -> int:
    from loopctl.spec import load_spec

    if not DEMO.exists():
        raise LoopctlError(f"the demo campaign {DEMO} is missing from this installation")
    spec = load_spec(DEMO)
    db = args.db or f"runs/alloy-mixing-{time.strftime('%Y%m%d-%H%M%S')}.db"
    Path(db).parent.mkdir(parents=True, exist_ok=True)
    print(f"demo: {spec.description.strip() or spec.name}")
    return run_campaign(
        spec,
        db,
        bind=DEFAULT_BIND,
        trials=args.trials,
        spawn=args.spawn_drivers,
        sync="FULL",
    )


def run_campaign(
    spec: Any,
    db: str,
    *,
    bind: str,
    trials: int | None,
    spawn: int | None,
    sync: str,
    security: argparse.Namespace | None = None,
    past: str | None = None,
) -> int:
    """`start` and `demo`: create the database (with past measurements, if given), then
    run the controller on it."""
    from loopctl.controller import check_bindable
    from loopctl.store import Store
    from loopctl.versions import software_versions

    curve = _check_run_options(spec, trials, spawn, bind, security)
    check_bindable(bind)  # before the database exists, so a busy port leaves nothing behind
    store = Store.create(
        db, spec.raw, spec.hash, software_versions(), synchronous=sync, source=spec.source_file
    )
    if past is not None:
        from loopctl.tables import import_csv

        try:
            ids = import_csv(store, spec, past)
        except BaseException:  # a bad file leaves no half-made campaign behind
            store.close()
            for suffix in ("", "-wal", "-shm", "-lock"):
                Path(db + suffix).unlink(missing_ok=True)
            raise
        print(f"imported {len(ids)} trials ({ids[0]}..{ids[-1]}) from {past}")
    return _run(store, spec, db, bind=bind, trials=trials, spawn=spawn, curve=curve)


def cmd_resume(args: argparse.Namespace) -> int:
    from loopctl.controller import check_bindable
    from loopctl.integrity import stored_spec
    from loopctl.store import Store

    store = Store.open(args.db, synchronous=args.sync or "FULL")
    try:
        spec = stored_spec(store)
        earlier = store.run_settings()  # what the campaign last ran with
        store.set_synchronous(args.sync or earlier.get("synchronous") or "FULL")
        bind = args.bind or earlier.get("endpoint") or DEFAULT_BIND
        curve = _check_run_options(spec, args.trials, args.spawn_drivers, bind, args)
        if not args.bind and earlier.get("endpoint"):
            try:
                check_bindable(bind)
            except LoopctlError as exc:
                raise LoopctlError(
                    f"{exc}; it is the endpoint this campaign last ran at (drivers left running "
                    "keep calling it): free it, or choose another with --bind"
                ) from None
    except BaseException:
        store.close()
        raise
    trials = args.trials or earlier.get("trials")
    return _run(
        store, spec, args.db, bind=bind, trials=trials, spawn=args.spawn_drivers, curve=curve
    )


def _check_run_options(
    spec: Any,
    trials: int | None,
    spawn: int | None,
    bind: str,
    security: argparse.Namespace | None,
) -> Any:
    """Refuse what cannot work before anything is created; returns the CURVE set-up."""
    from loopctl.security import Curve, is_loopback

    if trials is not None and trials < 1:
        raise LoopctlError("--trials must be at least 1")
    n_spawn = spec.drivers.spawn if spawn is None else spawn
    if n_spawn and spec.oracle is None:
        raise LoopctlError(
            "--spawn-drivers starts oracle drivers, but the campaign file has no `oracle` section"
        )
    base = spec.base_dir or Path(".")
    secret = getattr(security, "curve_secret_key", None) or (
        str(base / spec.security.curve_secret_key) if spec.security.curve_secret_key else None
    )
    allowed = getattr(security, "authorized_keys", None) or (
        str(base / spec.security.authorized_keys) if spec.security.authorized_keys else None
    )
    if (secret is None) != (allowed is None):
        raise LoopctlError("CURVE needs both a secret key and a folder of authorised keys")
    curve = Curve(Path(secret), Path(allowed)) if secret and allowed else None
    if curve is not None:
        curve.allowed()  # fail now on a missing folder or a bad key file
        if n_spawn:
            raise LoopctlError(
                "spawned drivers do not use CURVE keys; start them by hand "
                "with --key and --server-key"
            )
    elif not is_loopback(bind) and not getattr(security, "insecure", False):
        raise LoopctlError(
            f"{bind} is reachable from other machines, and without CURVE anyone who can reach "
            "it can register as a driver and submit results. Set security.curve_secret_key and "
            "security.authorized_keys (or --curve-secret-key/--authorized-keys; keys come from "
            "`loopctl keys generate`), or pass --insecure on a network you trust"
        )
    return curve


def _run(
    store: Any,
    spec: Any,
    db: str,
    *,
    bind: str,
    trials: int | None,
    spawn: int | None,
    curve: Any = None,
) -> int:
    """Bind, start local drivers if asked, run until done, print the summary."""
    from loopctl.controller import Controller, driver_settings, run_controller
    from loopctl.progress import TerminalReporter
    from loopctl.spawn import spawn_drivers, stop_drivers
    from loopctl.strategies import make_strategy

    n_spawn = spec.drivers.spawn if spawn is None else spawn
    ctl = Controller(
        store, spec, make_strategy(spec), trials=trials, settings=driver_settings(spec)
    )
    procs = []
    try:
        endpoint = ctl.bind(bind, curve)
        print(f"campaign {spec.name!r}: database {db}")
        print(f"controller listening on {endpoint}", flush=True)
        if n_spawn:
            procs = spawn_drivers(endpoint, n_spawn, db)
        else:
            print(driver_hint(spec, endpoint, curve), flush=True)
        ctl.reporter = reporter = TerminalReporter(spec.name, db=db)
        t0 = time.monotonic()
        try:
            reason = run_controller(ctl)
        finally:
            reporter.close()
        print(summary_text(store, spec, db, reason, time.monotonic() - t0))
    finally:
        # finished: drivers were told to exit; stopped early: they are ended now and keep
        # any unacknowledged result in their outbox for `loopctl resume --spawn-drivers`
        stop_drivers(procs, timeout=5.0 if ctl.finished else 0.0)
        store.close()
    return 0 if not reason.startswith("error") else 1


def driver_hint(spec: Any, endpoint: str, curve: Any = None) -> str:
    """How to connect the kind of driver this campaign is written for: its `robot:` section
    means the robot driver, its `oracle:` section the simulated one; with neither, the
    results come from a person or a driver of the lab's own, and suggesting the simulated
    oracle (which would fill the database with made-up numbers) would mislead."""
    keys = " --key NAME.key_secret --server-key CONTROLLER.key" if curve is not None else ""
    if spec.robot:
        cmds = [f"loopctl driver robot --connect {endpoint} --name robot-1{keys}"]
    elif spec.oracle is not None:
        cmds = [f"loopctl driver oracle --connect {endpoint}{keys}"]
    else:
        cmds = [
            f"loopctl driver human --connect {endpoint} --operator NAME{keys}",
            "or a driver of your own (docs/drivers.md)",
        ]
    return "waiting for drivers: " + "\n  ".join(cmds)


def summary_text(store: Any, spec: Any, db: str, reason: str, wall: float) -> str:
    from loopctl import ledger
    from loopctl.progress import describe_simulated, format_parameters

    counts = ledger.run_counts(store)
    best = ledger.best(store, spec)
    lines = [
        f"finished: {reason}",
        f"trials: {counts.get('completed', 0)} completed, {counts.get('failed', 0)} failed, "
        f"{counts.get('abandoned', 0)} abandoned in {wall:.1f} s",
    ]
    if len(spec.objectives) > 1:
        from loopctl.status import format_pareto

        lines.extend(format_pareto(ledger.pareto(store, spec), show=10))
    elif best is not None:
        unit = spec.objectives[0].unit
        lines.append(
            f"best: {best['objective']} = {best['value']:.6g}"
            f"{' ' + unit if unit else ''} (trial {best['trial_id']})"
        )
        lines.append(f"      {format_parameters(best['parameters'])}")
        simulated = describe_simulated(best)
        if simulated:
            lines.append(f"      {simulated}")
    lines.append(f"database: {Path(db).resolve()}")
    return "\n".join(lines)


def cmd_driver_oracle(args: argparse.Namespace) -> int:
    from drivers.oracle import OracleDriver

    overrides = {
        "kind": args.oracle,
        "function": args.function,
        "table": args.table,
        "latency": args.latency,
        "noise": args.noise,
        "fail_rate": args.fail_rate,
        "seed": args.seed,
    }
    drv = OracleDriver(
        args.connect,
        capacity=args.capacity,
        overrides={k: v for k, v in overrides.items() if v is not None},
        **_sdk_options(args),
    )
    return drv.run()


def _sdk_options(args: argparse.Namespace) -> dict[str, Any]:
    """What every driver kind takes from the command line: name, outbox, CURVE keys."""
    if (args.key is None) != (args.server_key is None):
        raise LoopctlError("--key and --server-key go together (CURVE needs both)")
    return {
        "name": args.name,
        "outbox": args.outbox,
        "curve": (args.key, args.server_key) if args.key else None,
    }


def cmd_operator(args: argparse.Namespace) -> int:
    import getpass

    from loopctl.command import send_command

    body: dict[str, Any] = {"action": args.action, "operator": args.operator or getpass.getuser()}
    if getattr(args, "trials", None):
        body["trials"] = args.trials
    if getattr(args, "reason", None):
        body["reason"] = args.reason
    if getattr(args, "values", None):
        body["parameters"] = _parse_settings(args.values)
    if getattr(args, "outcomes", None):
        body["outcomes"] = _parse_settings(args.outcomes)
    print(send_command(args.db, body))
    return 0


def _parse_settings(items: list[str]) -> dict[str, Any]:
    """NAME=VALUE pairs; values that read as numbers become numbers."""
    out: dict[str, Any] = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or not name:
            raise LoopctlError(f"--set {item!r}: expected NAME=VALUE")
        value: Any = text
        try:
            value = int(text)
        except ValueError:
            try:
                value = float(text)
            except ValueError:
                pass
        out[name.strip()] = value
    return out


def cmd_driver_robot(args: argparse.Namespace) -> int:
    from drivers.robot import RobotDriver

    drv = RobotDriver(
        args.connect,
        robot_url=args.robot_url,
        config=args.config,
        capacity=args.capacity,
        **_sdk_options(args),
    )
    return drv.run()


def cmd_driver_human(args: argparse.Namespace) -> int:
    from drivers.human import HumanDriver

    sdk = _sdk_options(args)
    sdk["name"] = sdk["name"] or f"human-{args.operator}"
    drv = HumanDriver(args.connect, operator=args.operator, **sdk)
    return drv.run()


def cmd_robot_sim(args: argparse.Namespace) -> int:
    from drivers.robot_sim import serve

    if not 0 <= args.fail_rate <= 1 or args.latency < 0 or args.slots < 1:
        raise LoopctlError("--fail-rate must be in [0, 1], --latency >= 0, --slots >= 1")
    serve(args.port, args.latency, args.fail_rate, args.seed, args.slots)
    return 0


def cmd_keys_generate(args: argparse.Namespace) -> int:
    from loopctl.security import fingerprint, generate, load_public

    public, secret = generate(args.name, Path(args.out))
    print(f"public key: {public} (fingerprint {fingerprint(load_public(public))})")
    print(f"secret key: {secret} (keep it private)")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from loopctl.status import campaign_status, format_status

    st = campaign_status(args.db)
    print(json.dumps(st, indent=2) if args.json else format_status(st))
    return 0


def cmd_pending(args: argparse.Namespace) -> int:
    from loopctl.status import campaign_status, format_pending

    items = campaign_status(args.db)["awaiting_approval"]
    print(json.dumps(items, indent=2) if args.json else format_pending(items, args.db))
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    from loopctl.audit import audit, format_audit
    from loopctl.store import Store

    with Store.open(args.db, readonly=True) as store:
        report = audit(store, args.expect_head, args.receipts)
        if args.replay and report["ok"]:
            from loopctl.integrity import stored_spec
            from loopctl.replay import format_replay, replay

            report["replay"] = replay(store, stored_spec(store))
            report["ok"] = all(r["ok"] is not False for r in report["replay"])
    text = format_audit(report, args.db)
    if "replay" in report:
        text += "\n\n" + format_replay(report["replay"])
    print(json.dumps(report, indent=2) if args.json else text)
    return 0 if report["ok"] else 2


def cmd_report(args: argparse.Namespace) -> int:
    from loopctl.report import write_report
    from loopctl.store import Store

    out = Path(args.out or f"{args.db}.report")
    with Store.open(args.db, readonly=True) as store:
        page = write_report(store, out)
    print(f"wrote {page} and {len(list(out.glob('*.png')))} figures in {out}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from loopctl.integrity import verified_spec
    from loopctl.store import Store
    from loopctl.tables import to_csv, to_json, to_parquet, trial_rows

    with Store.open(args.db, readonly=True) as store:
        rows = trial_rows(store, verified_spec(store))
    if args.format == "parquet":
        if not args.out:
            raise LoopctlError("--format parquet writes a binary file: give --out FILE.parquet")
        to_parquet(rows, args.out)
        print(f"wrote {len(rows)} trials to {args.out}", file=sys.stderr)
        return 0
    text = to_csv(rows) if args.format == "csv" else to_json(rows)
    if args.out:
        Path(args.out).write_text(text)
        print(f"wrote {len(rows)} trials to {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from loopctl.integrity import stored_spec
    from loopctl.store import Store
    from loopctl.tables import import_csv

    with Store.open(args.db) as store:
        ids = import_csv(store, stored_spec(store), args.csv, force=args.force)
    print(f"imported {len(ids)} trials ({ids[0]}..{ids[-1]}) from {args.csv}")
    return 0


def cmd_backtest(args: argparse.Namespace) -> int:
    from loopctl.backtest import BacktestError, backtest
    from loopctl.spec import load_spec

    columns = {}
    for item in args.column:
        name, eq, col = item.partition("=")
        if not eq or not name or not col:
            raise BacktestError(f"--column {item!r}: give NAME=COLUMN")
        columns[name] = col
    out = args.out or f"backtest-{load_spec(args.file).name}"
    bar = _BacktestProgress()
    try:
        result = backtest(
            args.file,
            args.data,
            strategies=args.strategy or ("auto", "random"),
            seeds=args.seeds,
            budget=args.budget,
            batch=args.batch,
            initial=args.initial,
            workers=args.workers,
            out=out,
            columns=columns,
            progress=bar.update,
        )
    finally:
        bar.close()
    print(result.markdown)
    print(f"wrote runs.jsonl, summary.json, summary.md and top.png in {result.out}", flush=True)
    return 0


class _BacktestProgress:
    """A bar on a terminal; a line per finished run otherwise."""

    def __init__(self) -> None:
        self.bar: Any = None
        self.task: Any = None

    def update(self, done: int, total: int, record: Any) -> None:
        line = "" if record is None else f"{record['arm']} seed {record['seed']}"
        if record is not None:
            line += f": {len(record['order'])} cycles"
        if not sys.stderr.isatty():
            if record is not None:
                print(f"[{done}/{total} runs] {line}", file=sys.stderr, flush=True)
            return
        if self.bar is None:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            self.bar = Progress(
                TextColumn("backtest"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[last]}"),
                console=Console(stderr=True),
            )
            self.task = self.bar.add_task("runs", total=total, completed=done, last="")
            self.bar.start()
        self.bar.update(self.task, completed=done, last=line)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
