"""The CLI called in this process: the same ``main`` that ``python -m loopctl`` runs, without
the second or so a new interpreter costs. For commands whose behaviour does not involve a
process of their own (parsing, reading a database, exit codes); starting controllers and
drivers, closed pipes and what a fresh interpreter imports stay with real processes."""

from __future__ import annotations

import subprocess

import pytest

from loopctl.cli import main


def cli(
    capsys: pytest.CaptureFixture[str], *args: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """``loopctl ARGS`` in process, as :func:`tests.conftest.loopctl` reports a process:
    exit code, standard output, standard error."""
    capsys.readouterr()  # only what this command prints
    try:
        code = main(list(args))
    except SystemExit as exc:  # argparse: --help, --version, usage errors
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    result = subprocess.CompletedProcess(["loopctl", *args], code, out, err)
    if check and code != 0:
        raise AssertionError(
            f"loopctl {' '.join(args)} exited {code}\nstdout:\n{out}\nstderr:\n{err}"
        )
    return result
