"""A driver that leaves from inside an evaluation (a person typing q) hands its trial back first."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import ENV, ROOT, TCP_ANY, Procs, db_rows, scaled
from tests.specs import branin

# the evaluation asks to leave, then takes a while to hand its trial back: on a loaded
# machine a person's driver can be that slow between `stop` and its report
LEAVER = """
import sys, time
from loopctl.drivers.base import Driver, PutBack

class Leaver(Driver):
    kind = "leaver"

    def evaluate(self, parameters):
        self.stop("the operator closed the program")
        time.sleep(0.5)
        raise PutBack("put back by the operator, who left")

sys.exit(Leaver(sys.argv[1], name="leaver", outbox=sys.argv[2]).run())
"""


def test_a_driver_leaving_mid_evaluation_releases_its_trial_before_bye(
    tmp_path: Path, procs: Procs
) -> None:
    """BYE used to go out before the evaluation's RELEASE: the controller counted the trial
    as lost and, with no retries, abandoned it; the RELEASE was then refused."""
    spec = branin(
        tmp_path,
        strategy={"method": "sobol"},
        budget={"trials": 1},
        execution={"max_in_flight": 1, "retries": 0},
    )
    db = tmp_path / "c.db"
    ctl = procs.controller(spec, db, TCP_ANY)
    ep = procs.endpoint(ctl)
    script = tmp_path / "leaver.py"
    script.write_text(LEAVER)
    out = subprocess.run(
        [sys.executable, str(script), ep, str(tmp_path / "ob")],
        cwd=ROOT,
        env=dict(ENV, PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=scaled(60),
    )
    assert out.returncode == 0, out.stderr[-3000:]
    kinds = [
        k
        for (k,) in db_rows(
            db,
            "SELECT kind FROM events WHERE kind IN "
            "('trial_released', 'trial_interrupted', 'driver_left') ORDER BY seq",
        )
    ]
    assert kinds == ["trial_released", "driver_left"], procs.log("controller.log")[-3000:]
    assert db_rows(db, "SELECT status, attempts FROM trials") == [("proposed", 0)]
