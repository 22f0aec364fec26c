"""The wheel carries the example campaigns, so `loopctl demo` works without a checkout."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ENV, ROOT, scaled

pytestmark = pytest.mark.slow  # builds a wheel: several seconds
PIP = (sys.executable, "-m", "pip", "--quiet")


def test_the_wheel_ships_every_package_and_the_example_campaigns(tmp_path: Path) -> None:
    subprocess.run(
        [*PIP, "wheel", "--no-deps", "--no-build-isolation", str(ROOT), "-w", str(tmp_path / "w")],
        check=True,
        env=ENV,
        cwd=tmp_path,
        timeout=scaled(120),
    )
    (wheel,) = (tmp_path / "w").glob("loopctl-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for example in (ROOT / "campaigns").iterdir():
        if example.suffix in (".yaml", ".csv"):
            assert f"loopctl/campaigns/{example.name}" in names, example.name
    for structure in (ROOT / "campaigns" / "structures").iterdir():  # structure-chgnet.yaml's
        assert f"loopctl/campaigns/structures/{structure.name}" in names, structure.name
    # pyproject lists the packages: one added to the checkout and not there would be lost
    for init in (ROOT / "loopctl").rglob("__init__.py"):
        assert init.relative_to(ROOT).as_posix() in names, init
    # the dashboard's page, script and style: it works offline, from the package alone
    for asset in (ROOT / "loopctl" / "dashboard" / "static").iterdir():
        assert asset.relative_to(ROOT).as_posix() in names, asset

    site = tmp_path / "site"
    subprocess.run(
        [*PIP, "install", "--no-deps", "--target", str(site), str(wheel)],
        check=True,
        env=ENV,
        cwd=tmp_path,
        timeout=scaled(120),
    )
    code = (
        "import loopctl\nfrom loopctl.examples import example_path\n"
        "from loopctl.spec import load_spec\n"
        "path = example_path('alloy-mixing.yaml')\n"
        "print(loopctl.__file__, path, load_spec(path).name, sep='\\n')"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=dict(ENV, PYTHONPATH=str(site)),
        cwd=tmp_path,  # not the checkout, whose loopctl would shadow the installed one
        timeout=scaled(60),
    )
    assert out.returncode == 0, out.stderr[-2000:]
    module, path, name = out.stdout.split()
    assert Path(module).is_relative_to(site) and Path(path).is_relative_to(site), out.stdout
    assert path.endswith("loopctl/campaigns/alloy-mixing.yaml") and name == "alloy-mixing"
