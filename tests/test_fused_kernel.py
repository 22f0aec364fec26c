"""No loopctl process compiles C++ at run time (a killed compile once hung every later run)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, scaled

PROBE = """
import importlib.util, json, sys
if sys.argv[1] == "hidden":  # as on a machine where the install could not build it
    sys.modules["logei_fused_ext"] = None
from loopctl import Campaign
c = Campaign.create({
    "name": "mo", "seed": 2,
    "space": [{"name": "x", "type": "range", "bounds": [0, 1]},
              {"name": "z", "type": "range", "bounds": [0, 1]}],
    "objectives": [{"name": "a", "goal": "minimize"}, {"name": "b", "goal": "minimize"}],
    "budget": {"trials": 10}, "strategy": {"initial_trials": 4},
})
for _ in range(5):
    (t,) = c.ask()
    x, z = t.parameters["x"], t.parameters["z"]
    c.tell(t.id, {"a": x + z, "b": (1 - x) ** 2 + z})
import botorch.acquisition.multi_objective.logei as logei
print(json.dumps({
    "strategy": c.store.proposals()[-1]["strategy"],
    "loaded": logei._C is not None,
    "built": sys.argv[1] != "hidden" and importlib.util.find_spec("logei_fused_ext") is not None,
}))
"""


@pytest.mark.parametrize("kernel", ["as installed", "hidden"])
def test_ehvi_never_starts_a_compiler(tmp_path: Path, kernel: str) -> None:
    ext = tmp_path / "torch_extensions"
    ext.mkdir()
    env = os.environ | {"TORCH_EXTENSIONS_DIR": str(ext)}
    out = subprocess.run(
        [sys.executable, "-c", PROBE, kernel],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=scaled(120),
    )
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["strategy"] == "mobo"
    assert list(ext.iterdir()) == [], "BoTorch started a JIT build"
    # `make install` builds the kernel; where it did, EHVI uses it
    assert got["loaded"] == got["built"]
