"""`loopctl ...` commands: parse, call the library, print. Heavy imports stay inside commands
so that `status`, `export`, `validate` and `--help` never load torch. The arguments are
defined in :mod:`loopctl.cli_parser`; running a campaign is :mod:`loopctl.run`."""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sqlite3
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loopctl.cli_parser import build_parser
from loopctl.errors import LoopctlError

if TYPE_CHECKING:
    from loopctl.run import RunResult, Security

EXAMPLE = Path(__file__).with_name("example-campaign.yaml")
DEMO = "alloy-mixing.yaml"  # shipped in the wheel too (loopctl.examples)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.command is None:
        if args.subcommand_of is not None:  # `loopctl keys`: which action?
            args.subcommand_of.print_help(sys.stderr)
            return 2
        parser.print_help()
        return 0
    try:
        return int(COMMANDS[args.command](args) or 0)
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


# ---------------------------------------------------------------------- campaigns


def cmd_init(args: argparse.Namespace) -> int:
    target = Path(args.file)
    if target.exists() and not args.force:
        raise LoopctlError(f"{target} exists; use --force to overwrite")
    target.write_text(EXAMPLE.read_text())
    print(f"wrote {target}; check it with: loopctl validate {target}")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from loopctl.spec import load_spec
    from loopctl.spec_summary import summarise_spec

    print(summarise_spec(load_spec(args.file)))
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from loopctl.json_schema import json_schema

    print(json.dumps(json_schema(), indent=2))
    return 0


def cmd_start(args: argparse.Namespace) -> int:
    from loopctl import run

    result = run.start(
        args.file,
        args.db,
        bind=args.bind or run.DEFAULT_BIND,
        trials=args.trials,
        spawn_drivers=args.spawn_drivers,
        sync=args.sync or "FULL",
        security=_security(args),
        past=args.past,
    )
    return _exit_code(result)


def cmd_resume(args: argparse.Namespace) -> int:
    from loopctl import run

    result = run.resume(
        args.db,
        bind=args.bind,
        trials=args.trials,
        spawn_drivers=args.spawn_drivers,
        sync=args.sync,
        security=_security(args),
    )
    return _exit_code(result)


def cmd_demo(args: argparse.Namespace) -> int:
    from loopctl import run
    from loopctl.examples import example_path
    from loopctl.spec import load_spec

    spec = load_spec(example_path(DEMO))
    db = args.db or f"runs/alloy-mixing-{time.strftime('%Y%m%d-%H%M%S')}.db"
    Path(db).parent.mkdir(parents=True, exist_ok=True)
    print(f"demo: {spec.description.strip() or spec.name}")
    result = run.start(spec, db, trials=args.trials, spawn_drivers=args.spawn_drivers)
    return _exit_code(result)


def _security(args: argparse.Namespace) -> Security:
    from loopctl.run import Security

    return Security(
        curve_secret_key=args.curve_secret_key,
        authorized_keys=args.authorized_keys,
        insecure=args.insecure,
    )


def _exit_code(result: RunResult) -> int:
    return 0 if result.ok else 1


# ---------------------------------------------------------------------- drivers and operators


def cmd_driver_oracle(args: argparse.Namespace) -> int:
    from loopctl.drivers.oracle import OracleDriver

    drv = OracleDriver(
        args.connect,
        capacity=args.capacity,
        overrides=_oracle_overrides(args),
        **_sdk_options(args),
    )
    return drv.run()


def _oracle_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The oracle flags given on the command line (they win over the campaign's section)."""
    overrides = {
        "kind": args.oracle,
        "function": args.function,
        "table": args.table,
        "latency": args.latency,
        "noise": args.noise,
        "fail_rate": args.fail_rate,
        "seed": args.seed,
    }
    return {k: v for k, v in overrides.items() if v is not None}


def cmd_driver_parsl(args: argparse.Namespace) -> int:
    import socket

    from loopctl.drivers import parsl_driver as pd

    sdk = _sdk_options(args)
    sdk["name"] = sdk["name"] or f"parsl-{socket.gethostname()}-{os.getpid()}"
    if args.workers < 1 or args.nodes < 1 or (args.capacity is not None and args.capacity < 1):
        raise LoopctlError("--workers, --nodes and --capacity must be at least 1")
    run_dir = args.run_dir or (None if args.config else pd.default_run_dir(sdk["name"]))
    if args.config:
        config = pd.config_from_file(args.config, run_dir)
    elif args.preset == "slurm":
        if not args.partition:
            raise LoopctlError("--preset slurm needs --partition")
        config = pd.slurm_config(
            partition=args.partition,
            walltime=args.walltime,
            nodes=args.nodes,
            workers_per_node=args.workers,
            account=args.account,
            worker_init=args.worker_init,
            run_dir=str(run_dir),
        )
    else:
        config = pd.local_config(args.workers, str(run_dir))
    drv = pd.ParslDriver(
        args.connect, config, capacity=args.capacity, overrides=_oracle_overrides(args), **sdk
    )
    return drv.run()


def cmd_driver_dask(args: argparse.Namespace) -> int:
    from loopctl.drivers.dask_driver import DaskDriver

    if (args.local is not None and args.local < 1) or (
        args.capacity is not None and args.capacity < 1
    ):
        raise LoopctlError("--local and --capacity must be at least 1")
    drv = DaskDriver(
        args.connect,
        scheduler=args.scheduler,
        local=args.local,
        capacity=args.capacity,
        overrides=_oracle_overrides(args),
        **_sdk_options(args),
    )
    return drv.run()


def _sdk_options(args: argparse.Namespace) -> dict[str, Any]:
    """What every driver kind takes from the command line: name, outbox, CURVE keys,
    levels served, and how long to wait for a controller."""
    if (args.key is None) != (args.server_key is None):
        raise LoopctlError("--key and --server-key go together (CURVE needs both)")
    return {
        "name": args.name,
        "outbox": args.outbox,
        "curve": (args.key, args.server_key) if args.key else None,
        "fidelities": args.fidelity,
        "give_up_after": _seconds(args.give_up_after, "--give-up-after"),
    }


def _seconds(value: float, flag: str) -> float:
    if not (math.isfinite(value) and value >= 0):
        raise LoopctlError(f"{flag} must be a number of seconds >= 0 (0: never), not {value:g}")
    return value


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


def cmd_dashboard(args: argparse.Namespace) -> int:
    from loopctl.dashboard.server import serve

    if not 0 <= args.port <= 65535:
        raise LoopctlError("--port must be between 0 and 65535")
    return serve(args.db, args.host, args.port, args.allow_remote_actions, args.operator)


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
    from loopctl.drivers.robot import RobotDriver

    drv = RobotDriver(
        args.connect,
        robot_url=args.robot_url,
        config=args.config,
        capacity=args.capacity,
        **_sdk_options(args),
    )
    return drv.run()


def cmd_driver_human(args: argparse.Namespace) -> int:
    from loopctl.drivers.human import HumanDriver

    sdk = _sdk_options(args)
    sdk["name"] = sdk["name"] or f"human-{args.operator}"
    drv = HumanDriver(args.connect, operator=args.operator, **sdk)
    return drv.run()


def cmd_robot_sim(args: argparse.Namespace) -> int:
    from loopctl.drivers.robot_sim import serve

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


# ---------------------------------------------------------------------- reading a campaign


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
        report = audit(store, args.expect_head, args.receipts, full=args.full)
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


# ---------------------------------------------------------------------- data from outside


def cmd_import(args: argparse.Namespace) -> int:
    from loopctl.integrity import stored_spec
    from loopctl.store import Store
    from loopctl.tables import import_csv

    with Store.open(args.db) as store:
        ids = import_csv(store, stored_spec(store), args.csv, force=args.force)
    print(f"imported {len(ids)} trials ({ids[0]}..{ids[-1]}) from {args.csv}")
    return 0


def cmd_backtest(args: argparse.Namespace) -> int:
    from loopctl.backtest import backtest
    from loopctl.spec import load_spec

    columns = _parse_columns(args.column)
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


def _parse_columns(items: list[str]) -> dict[str, str]:
    from loopctl.backtest import BacktestError

    columns = {}
    for item in items:
        name, eq, col = item.partition("=")
        if not eq or not name or not col:
            raise BacktestError(f"--column {item!r}: give NAME=COLUMN")
        columns[name] = col
    return columns


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


# what `args.command` (set by loopctl.cli_parser) names
COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "init": cmd_init,
    "validate": cmd_validate,
    "schema": cmd_schema,
    "start": cmd_start,
    "resume": cmd_resume,
    "demo": cmd_demo,
    "driver_oracle": cmd_driver_oracle,
    "driver_robot": cmd_driver_robot,
    "driver_human": cmd_driver_human,
    "driver_parsl": cmd_driver_parsl,
    "driver_dask": cmd_driver_dask,
    "operator": cmd_operator,
    "robot_sim": cmd_robot_sim,
    "keys_generate": cmd_keys_generate,
    "status": cmd_status,
    "pending": cmd_pending,
    "audit": cmd_audit,
    "dashboard": cmd_dashboard,
    "report": cmd_report,
    "export": cmd_export,
    "import": cmd_import,
    "backtest": cmd_backtest,
}
