"""The `loopctl` command line: every command, its arguments and its help, one function per
group of commands. Each command is named in ``args.command``; :mod:`loopctl.cli` runs it.
Nothing here imports more than argparse, so `--help` stays instant."""

from __future__ import annotations

import argparse
from pathlib import Path

from loopctl import __version__


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

    p.set_defaults(command=None, subcommand_of=None)
    _campaign_commands(sub)
    _driver_commands(sub)
    _operator_commands(sub)
    _service_commands(sub)
    _reading_commands(sub)
    _data_commands(sub)
    return p


def _campaign_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Writing, checking and running a campaign."""
    c = sub.add_parser("init", help="write a commented example campaign file")
    c.add_argument(
        "file",
        nargs="?",
        default="campaign.yaml",
        help="where to write it (default: campaign.yaml)",
    )
    c.add_argument("--force", action="store_true", help="overwrite an existing file")
    c.set_defaults(command="init")

    c = sub.add_parser("validate", help="check a campaign file and print its summary")
    c.add_argument("file", help="campaign file (YAML)")
    c.set_defaults(command="validate")

    c = sub.add_parser(
        "schema",
        help="print the JSON Schema (draft 2020-12) of campaign files, for editors and tools",
        description="Print the JSON Schema (draft 2020-12) of campaign files, made from the "
        "same table of fields that `loopctl validate` checks files against. It covers field "
        "names, types and allowed values; the checks across fields (bounds in order, "
        "constraints naming parameters) are `loopctl validate`'s alone.",
    )
    c.set_defaults(command="schema")

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
    c.set_defaults(command="start")

    c = sub.add_parser(
        "resume",
        help="carry on a stopped or crashed campaign from its database alone",
    )
    c.add_argument("db", metavar="PATH", help="campaign database")
    _controller_options(c)
    c.set_defaults(command="resume")

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
    c.set_defaults(command="demo")


def _driver_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The processes that run trials: `loopctl driver KIND`."""
    c = sub.add_parser("driver", help="run a driver that connects to a controller")
    c.set_defaults(command=None, subcommand_of=c)
    dsub = c.add_subparsers(title="kinds", metavar="KIND")
    o = dsub.add_parser(
        "oracle",
        help="simulated DFT oracle: EMT or CHGNet energies, benchmarks, table look-up",
    )
    _oracle_options(o)
    _driver_options(o)
    o.set_defaults(command="driver_oracle")
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
    rb.set_defaults(command="driver_robot")
    hu = dsub.add_parser("human", help="a person enters results at this terminal")
    hu.add_argument(
        "--operator", required=True, help="who enters the results; recorded with every entry"
    )
    _driver_options(hu, capacity=False)
    hu.set_defaults(command="driver_human")
    _parsl_driver(dsub)
    _dask_driver(dsub)


def _oracle_options(c: argparse.ArgumentParser) -> None:
    """What the oracle computes, when not the campaign file's `oracle` section."""
    c.add_argument(
        "--oracle",
        choices=("emt", "chgnet", "function", "table"),
        help="what to compute (default: from the campaign file, sent in WELCOME)",
    )
    c.add_argument("--function", help="benchmark function for --oracle function (e.g. branin)")
    c.add_argument("--table", help="CSV for --oracle table")
    c.add_argument(
        "--latency",
        type=_latency,
        help="seconds added to each evaluation, or LOW..HIGH for a uniform jitter (0.1..0.3)",
    )
    c.add_argument("--noise", type=float, help="SD of Gaussian noise added to each outcome")
    c.add_argument("--fail-rate", type=float, help="probability that an evaluation fails")
    c.add_argument("--seed", type=int, help="seed for noise and failures")


def _parsl_driver(dsub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`loopctl driver parsl`: the oracle on a Parsl engine (loopctl/drivers/parsl_driver.py)."""
    p = dsub.add_parser(
        "parsl",
        help="the oracle's evaluations as Parsl apps on local workers or a SLURM allocation",
        description="Run the oracle's evaluations on a Parsl HighThroughputExecutor: on this "
        "machine (--preset local), on SLURM nodes (--preset slurm) or as a Python file's "
        "`config` says (--config). The driver takes as many trials at once as the engine has "
        "workers. See docs/drivers.md, 'Running evaluations on a cluster'.",
    )
    how = p.add_mutually_exclusive_group()
    how.add_argument(
        "--preset", choices=("local", "slurm"), help="a built-in configuration (default: local)"
    )
    how.add_argument(
        "--config", metavar="FILE.py", help="a Python file defining `config`, a parsl.config.Config"
    )
    p.add_argument(
        "--workers",
        type=int,
        default=2,
        help="workers (local) or workers per node (slurm) (default: 2)",
    )
    p.add_argument("--partition", help="SLURM partition (slurm; required)")
    p.add_argument(
        "--walltime", default="01:00:00", help="SLURM walltime, HH:MM:SS (slurm; default: 01:00:00)"
    )
    p.add_argument(
        "--nodes", type=int, default=1, help="SLURM nodes in the block (slurm; default: 1)"
    )
    p.add_argument("--account", help="SLURM account to charge (slurm)")
    p.add_argument(
        "--worker-init",
        help="shell commands run on each node before its workers start (slurm; default: put "
        "this Python's scripts and PYTHONPATH on PATH)",
    )
    p.add_argument(
        "--run-dir",
        help="folder for Parsl's logs and scripts (default: ~/.local/state/loopctl/parsl/NAME, "
        "or the config file's run_dir)",
    )
    p.add_argument(
        "--capacity",
        type=int,
        help="trials run at once (default: the engine's worker count)",
    )
    _oracle_options(p)
    _driver_options(p, capacity=False)
    p.set_defaults(command="driver_parsl")


def _dask_driver(dsub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`loopctl driver dask`: the oracle on a Dask cluster (loopctl/drivers/dask_driver.py)."""
    d = dsub.add_parser(
        "dask",
        help="the oracle's evaluations as tasks on a Dask scheduler or a local Dask cluster",
    )
    where = d.add_mutually_exclusive_group(required=True)
    where.add_argument("--scheduler", metavar="ADDRESS", help="a running Dask scheduler")
    where.add_argument(
        "--local", type=int, metavar="N", help="start a LocalCluster of N worker processes"
    )
    d.add_argument(
        "--capacity", type=int, help="trials run at once (default: the workers' threads)"
    )
    _oracle_options(d)
    _driver_options(d, capacity=False)
    d.set_defaults(command="driver_dask")


def _operator_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Decisions of a person, sent to a running controller or written to a stopped one."""
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
        c.set_defaults(command="operator", action=action)


def _service_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Helpers around a campaign: a simulated robot, CURVE keys."""
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
    c.set_defaults(command="robot_sim")

    c = sub.add_parser("keys", help="CURVE key pairs for encrypted, authenticated connections")
    c.set_defaults(command=None, subcommand_of=c)
    ksub = c.add_subparsers(title="actions", metavar="ACTION")
    k = ksub.add_parser("generate", help="make NAME.key (public) and NAME.key_secret (private)")
    k.add_argument("name", help="whose key: the controller's or a driver's name")
    k.add_argument("--out", required=True, metavar="DIR", help="folder to write the two files")
    k.set_defaults(command="keys_generate")


def _reading_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Looking at a campaign: none of these change its database."""
    c = sub.add_parser("status", help="trials by state, best so far, drivers, budget left")
    c.add_argument("db", metavar="PATH", help="campaign database")
    c.add_argument("--json", action="store_true", help="machine-readable output")
    c.set_defaults(command="status")

    c = sub.add_parser(
        "dashboard",
        help="a live campaign page in the browser: progress, results, why each trial was "
        "chosen, and operator actions (needs loopctl[dashboard])",
        description="Serve a live page for a campaign database, with or without a running "
        "controller. It prints its URL and a token: reading needs nothing, operator actions "
        "(approve, reject, suggest, pause, resume) need the token and go through the same "
        "path as `loopctl approve` and the others. Bound beyond loopback the page is "
        "read-only unless --allow-remote-actions is given.",
    )
    c.add_argument("db", metavar="PATH", help="campaign database")
    c.add_argument(
        "--port", type=int, default=8050, help="TCP port (default: 8050; 0: any free port)"
    )
    c.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default: 127.0.0.1, this machine only)",
    )
    c.add_argument(
        "--allow-remote-actions",
        action="store_true",
        help="accept operator actions (with the token) even when --host is not loopback; the "
        "token then crosses the network unencrypted",
    )
    c.add_argument(
        "--operator",
        help="the name the page offers for actions (default: your login; the page can change "
        "it, and every action records it)",
    )
    c.set_defaults(command="dashboard")

    c = sub.add_parser(
        "pending", help="proposals waiting for approval (execution.approval: manual)"
    )
    c.add_argument("db", metavar="PATH", help="campaign database")
    c.add_argument("--json", action="store_true", help="machine-readable output")
    c.set_defaults(command="pending")

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
        "--full",
        action="store_true",
        help="fold the whole log again and compare every table row, even if nothing changed "
        "since the last full check (by default a verified checkpoint then stands in for it)",
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
    c.set_defaults(command="audit")

    c = sub.add_parser(
        "report",
        help="write a self-contained HTML report and PNG figures (best so far or Pareto front, "
        "parameters against each objective, model check, trials)",
    )
    c.add_argument("db", metavar="PATH", help="campaign database")
    c.add_argument("--out", default=None, help="folder to write to (default: PATH.report/)")
    c.set_defaults(command="report")

    c = sub.add_parser(
        "export", help="write one row per trial (parameters, outcomes, state, driver, timestamps)"
    )
    c.add_argument("db", metavar="PATH", help="campaign database")
    c.add_argument("--format", choices=("csv", "json", "parquet"), default="csv")
    c.add_argument("--out", help="file to write (default: standard output)")
    c.set_defaults(command="export")


def _data_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Measurements from outside: importing them, backtesting strategies on them."""
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
    c.set_defaults(command="import")

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
    c.set_defaults(command="backtest")


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


GIVE_UP_AFTER = 600.0


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
        "--fidelity",
        action="append",
        metavar="NAME",
        help="campaigns with `fidelities`: a level this driver serves (repeat for several; "
        "default: all)",
    )
    c.add_argument(
        "--outbox",
        help="folder for unacknowledged results (default: ~/.local/state/loopctl/outbox/NAME)",
    )
    c.add_argument(
        "--give-up-after",
        type=float,
        default=GIVE_UP_AFTER,  # loopctl.protocol.GIVE_UP_AFTER (test_cli checks they agree)
        metavar="SECONDS",
        help="exit (status 4) after this long without a word from any controller, e.g. one "
        "that ended while this driver was reconnecting; unacknowledged results stay in "
        f"the outbox for the next run (default: {GIVE_UP_AFTER:g}; 0: never)",
    )


def _latency(text: str) -> str:
    from loopctl.drivers.oracle import parse_latency

    try:
        parse_latency(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text
