"""The CLI: help is accurate and the read-only commands stay fast (no torch). Parsing and
exit codes are checked in process; what needs a process of its own (a fresh interpreter's
imports, a closed pipe, a controller) runs one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from loopctl import Campaign
from tests.conftest import ENV, ROOT, TCP_ANY, Procs, scaled
from tests.inprocess import cli
from tests.specs import branin

COMMANDS = [
    "init",
    "validate",
    "schema",
    "start",
    "resume",
    "demo",
    "status",
    "audit",
    "report",
    "export",
    "import",
    "keys",
    "amend",
    "pending",
]


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    out = cli(capsys, "--help").stdout
    for cmd in [*COMMANDS, "driver"]:
        assert f"    {cmd}" in out
    for cmd in COMMANDS:
        assert cli(capsys, cmd, "--help").stdout.startswith(f"usage: loopctl {cmd}")
    oracle = cli(capsys, "driver", "oracle", "--help").stdout
    for flag in (
        "--connect",
        "--oracle",
        "--function",
        "--table",
        "--latency",
        "--noise",
        "--fail-rate",
        "--seed",
    ):
        assert flag in oracle


# what the read-only commands must never load: torch and the model libraries take seconds,
# pymatgen and numpy a third and a fifth of one (status was 0.6-0.8 s with them); pandas
# and pyarrow come with scikit-learn and sqlite_utils (bench/lean.py)
HEAVY: tuple[str, ...] = ("torch", "pandas", "pyarrow", "scipy", "sklearn", "sqlite_utils")
HEAVY += ("pymatgen", "zmq", "numpy", "pymoo", "sympy", "matplotlib")
CAMPAIGN_OUTCOMES = {
    "branin.yaml": [{"y": 1.0}, {"y": 2.0}],
    "alloy-mixing.yaml": [{"mixing_energy": 0.01}, {"mixing_energy": -0.02}],  # compositions
    "thin-film-robot.yaml": [  # two objectives: status shows a Pareto set
        {"figure_of_merit": 1.0, "stability": 2.0},
        {"figure_of_merit": 2.0, "stability": 1.0},
    ],
}


@pytest.mark.parametrize("campaign", sorted(CAMPAIGN_OUTCOMES))
@pytest.mark.parametrize(
    "args",
    [
        ["status", "{db}"],
        ["status", "{db}", "--json"],
        ["export", "{db}", "--format", "csv"],
        ["export", "{db}", "--format", "json"],
        ["audit", "{db}"],
        ["validate", "{spec}"],
        ["--help"],
    ],
)
def test_read_only_commands_do_not_import_heavy_libraries(
    tmp_path: Path, campaign: str, args: list[str]
) -> None:
    """Behaviour, not speed: the commands people run to look at a campaign import none of
    the libraries that made them slow."""
    spec = ROOT / "campaigns" / campaign
    db = tmp_path / "c.db"
    with Campaign.create(spec, db) as c:
        for t, outcomes in zip(c.ask(2), CAMPAIGN_OUTCOMES[campaign], strict=True):
            c.tell(t.id, outcomes)
    argv = [a.format(db=db, spec=spec) for a in args]
    # the database holds the spec as JSON: reading one needs no YAML parser either
    heavy = HEAVY + (("yaml",) if args[0] in ("status", "export", "audit") else ())
    code = (
        "import contextlib, io, sys\nfrom loopctl.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    try:\n        code = main(" + repr(argv) + ")\n"
        "    except SystemExit as exc:  # --help\n        code = exc.code\n"
        "print(code, sorted({m.split('.')[0] for m in sys.modules} & set(" + repr(heavy) + ")))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=scaled(60)
    )
    assert out.stdout.strip() == "0 []", out.stdout[-300:] + out.stderr[-2000:]


def test_status_of_missing_database_is_clear(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    r = cli(capsys, "status", str(tmp_path / "nope.db"), check=False)
    assert r.returncode == 1 and "no such campaign database" in r.stderr


def test_group_commands_without_a_subcommand_and_a_closed_pipe(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for group, usage in (("keys", "usage: loopctl keys"), ("driver", "usage: loopctl driver")):
        r = cli(capsys, group, check=False)
        assert r.returncode == 2 and r.stderr.startswith(usage), r
    db = tmp_path / "p.db"
    spec = branin(tmp_path, strategy={"method": "sobol"}, budget={"trials": 300})
    with Campaign.create(spec, db) as c:  # an audit longer than a pipe's buffer (64 KiB)
        for t in c.ask(300):
            c.tell(t.id, {"y": 1.0})
    # `loopctl audit DB | head -1`: the reader closes the pipe after one line
    p = subprocess.Popen(
        [sys.executable, "-m", "loopctl", "audit", str(db)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=ENV,
    )
    assert p.stdout is not None and p.stderr is not None
    p.stdout.readline()
    p.stdout.close()
    err = p.stderr.read().decode()
    assert p.wait(scaled(60)) == 0 and "Traceback" not in err, err


def test_oracle_latency_takes_a_range_and_refuses_a_backwards_one(
    capsys: pytest.CaptureFixture[str],
) -> None:
    r = cli(
        capsys,
        "driver",
        "oracle",
        "--connect",
        "tcp://127.0.0.1:1",
        "--latency",
        "3..1",
        check=False,
    )
    assert r.returncode == 2 and "need 0 <= LOW <= HIGH" in r.stderr, r.stderr
    r = cli(
        capsys, "driver", "oracle", "--connect", "tcp://127.0.0.1:1", "--latency", "x", check=False
    )
    assert r.returncode == 2 and "LOW..HIGH such as 0.1..0.3" in r.stderr, r.stderr


@pytest.mark.parametrize(
    ("campaign", "changes", "hint", "not_hinted"),
    [
        ("thin-film-robot.yaml", {}, "loopctl driver robot --connect tcp://", "driver oracle"),
        ("branin.yaml", {"drivers": {"spawn": 0}}, "loopctl driver oracle --connect", "robot"),
        (
            "branin.yaml",
            {"oracle": None, "drivers": None},
            "loopctl driver human --connect tcp://",
            "driver oracle",
        ),
    ],
)
def test_start_hints_at_the_driver_the_campaign_is_written_for(
    tmp_path: Path, procs: Procs, campaign: str, changes: dict[str, Any], hint: str, not_hinted: str
) -> None:
    """A robot campaign waits for the robot driver, not the simulated oracle; a campaign
    with neither a robot nor an oracle section for a person (or the lab's own driver)."""
    data = yaml.safe_load((ROOT / "campaigns" / campaign).read_text())
    for key, value in changes.items():
        data[key] = {**data[key], **value} if isinstance(value, dict) else value
    data = {k: v for k, v in data.items() if v is not None}
    spec = tmp_path / campaign
    spec.write_text(yaml.safe_dump(data))
    ctl = procs.controller(spec, tmp_path / "c.db", TCP_ANY)
    procs.wait_for(
        lambda: "waiting for drivers" in procs.log("controller.log"), 60, "the hint", ctl
    )
    log = procs.log("controller.log")
    assert hint in log and not_hinted not in log.split("waiting for drivers")[1], log
