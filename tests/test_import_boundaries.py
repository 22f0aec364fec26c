"""Layering, checked on what a fresh interpreter really imports: strategies know nothing of
the transport, the store or the controller; drivers know only the SDK and the protocol.
(Read-only commands importing neither torch nor pandas: tests/test_cli.py.)"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ENV, ROOT, scaled

pytestmark = pytest.mark.slow  # about 30 s: every strategy imports torch once

STRATEGIES = sorted(
    "loopctl.strategies" + ("" if p.stem == "__init__" else "." + p.stem)
    for p in (ROOT / "loopctl" / "strategies").glob("*.py")
)
DRIVERS = sorted(
    "loopctl.drivers" + ("" if p.stem == "__init__" else "." + p.stem)
    for p in (ROOT / "loopctl" / "drivers").glob("*.py")
)
STRATEGY_FORBIDDEN = {"zmq", "sqlite3", "sqlite_utils", "loopctl.store", "loopctl.controller"}
# the driver SDK (loopctl.drivers.base) and the loopctl modules it stands on (the drivers'
# own package, loopctl.drivers.*, is allowed besides these); campaign_yaml is the
# robot driver's reader of its site file, and structure_file (a leaf: loopctl.errors only)
# the CHGNet oracle's reader of a pool row's structure file, shared with the campaign reader
# so that both resolve the path and fail alike: the two imports outside SDK and protocol
DRIVER_LOOPCTL = {
    "loopctl",
    "loopctl.protocol",
    "loopctl.errors",
    "loopctl.receipts",
    "loopctl.security",
    "loopctl.campaign_yaml",
    "loopctl.structure_file",
}

# One interpreter that imports nothing of ours and forks a child per module, so each module
# is seen alone without paying an interpreter start for each.
PROBE = """
import importlib, json, os, sys
for name in sys.argv[1:]:
    r, w = os.pipe()
    if os.fork() == 0:
        importlib.import_module(name)
        os.write(w, json.dumps([name, sorted(sys.modules)]).encode() + b"\\n")
        os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        sys.stdout.write(f.read().decode())
    os.wait()
"""


def imported(modules: list[str]) -> dict[str, set[str]]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, *modules],
        capture_output=True,
        text=True,
        env=ENV,
        cwd=ROOT,
        timeout=scaled(120),
    )
    assert out.returncode == 0, out.stderr[-2000:]
    seen = {name: set(mods) for name, mods in map(json.loads, out.stdout.splitlines())}
    assert sorted(seen) == sorted(modules), out.stderr[-2000:]
    return seen


def test_strategies_import_neither_transport_nor_store_nor_controller() -> None:
    bad = {
        name: sorted(
            m for m in mods if m.split(".")[0] in STRATEGY_FORBIDDEN or m in STRATEGY_FORBIDDEN
        )
        for name, mods in imported(STRATEGIES).items()
    }
    assert not any(bad.values()), bad


def test_drivers_import_only_the_sdk_and_the_protocol() -> None:
    bad = {
        name: sorted(
            m
            for m in mods
            if (
                m.split(".")[0] == "loopctl"
                and m not in DRIVER_LOOPCTL
                and not m.startswith("loopctl.drivers")
            )
            or m.split(".")[0] in ("sqlite3", "sqlite_utils", "torch", "botorch", "pandas")
        )
        for name, mods in imported(DRIVERS).items()
    }
    assert not any(bad.values()), bad
