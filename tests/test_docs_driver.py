"""The driver example in docs/drivers.md runs as written against a real controller."""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ENV, ROOT, TCP_ANY, Procs, scaled
from tests.specs import branin

pytestmark = pytest.mark.slow


def test_documented_driver_completes_a_campaign(tmp_path: Path, procs: Procs) -> None:
    text = (ROOT / "docs" / "drivers.md").read_text()
    code = re.search(r"```python\n(.*?)```", text, re.S)
    assert code is not None
    assert len(code.group(1).strip().splitlines()) <= 20  # "a driver in under 20 lines"
    script = tmp_path / "furnace.py"
    script.write_text(code.group(1))
    spec = branin(tmp_path, strategy={"method": "sobol"}, budget={"trials": 6})
    db = tmp_path / "f.db"
    ctl = procs.controller(spec, db, TCP_ANY)
    drv = subprocess.Popen(
        [sys.executable, str(script), procs.endpoint(ctl)],
        cwd=ROOT,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert procs.exit_code(ctl, 60) == 0, procs.log("controller.log")
        assert drv.wait(scaled(20)) == 0
    finally:
        if drv.poll() is None:
            drv.kill()
    conn = sqlite3.connect(db)
    rows = conn.execute(
        "SELECT t.status, t.driver, json_extract(t.parameters, '$.x1'), "
        "json_extract(t.parameters, '$.x2'), o.value FROM trials t LEFT JOIN "
        "observations o ON o.trial_id = t.id"
    ).fetchall()
    conn.close()
    assert sum(r[0] == "completed" for r in rows) == 6
    for status, driver, x1, x2, y in rows:
        assert driver == "furnace-1"
        if status == "completed":
            assert y == pytest.approx((x1 - 2) ** 2 + (x2 - 3) ** 2)
        else:
            assert status == "failed" and x1 > 9.5
