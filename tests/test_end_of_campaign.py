"""The end of a campaign reaches every driver, and no driver waits for ever.

Real controller and driver processes over real ZeroMQ. A driver that is between two
sockets when the campaign ends cannot get the SHUTDOWN sent then: the controller stays to
tell it when it comes back (docs/protocol.md, "End of a campaign"), and a driver that never
hears from a controller again gives up after ``--give-up-after`` seconds, keeping what
was not acknowledged.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

from loopctl.cli_parser import GIVE_UP_AFTER as CLI_DEFAULT
from loopctl.drivers.base import EXIT_NO_CONTROLLER
from loopctl.protocol import GIVE_UP_AFTER
from tests.conftest import Procs, count
from tests.specs import branin

RUNNING = "SELECT COUNT(*) FROM trials WHERE status = 'running'"
COMPLETED = "SELECT COUNT(*) FROM trials WHERE status = 'completed'"


def test_a_driver_without_a_controller_gives_up_keeping_its_unacknowledged_result(
    tmp_path: Path, procs: Procs, ipc: str
) -> None:
    """The controller dies (SIGKILL: no SHUTDOWN) with a report unacknowledged (or a trial
    under way, whose evaluation then finishes into the outbox): the driver knocks for
    --give-up-after seconds, then exits with status 4 saying why and where the report is
    kept."""
    spec = branin(
        tmp_path,
        strategy={"method": "sobol"},
        budget={"trials": 50},
        execution={"heartbeat_interval": 0.2, "heartbeat_timeout": 1},
    )
    db = tmp_path / "g.db"
    ctl = procs.controller(spec, db, ipc)
    procs.serving(ctl, db)  # the clock runs from the driver's start: no knocking first
    drv = procs.driver(ipc, "g1", "--latency", "1.5", "--give-up-after", "3")
    # the second trial running: the first one's TASK went out, so exactly one report is
    # unacknowledged at the kill, whether the batch that recorded the first result and
    # dispatched the second had sent its ACK and TASK (then the second) or not (the first)
    procs.wait_for(
        lambda: count(db, RUNNING) >= 1 and count(db, COMPLETED) >= 1,
        60,
        "a second trial to run",
        ctl,
        drv,
    )
    ctl.send_signal(signal.SIGKILL)
    ctl.wait()
    killed = time.monotonic()
    assert procs.exit_code(drv, 3 + 20) == EXIT_NO_CONTROLLER, procs.log("g1.log")[-3000:]
    assert time.monotonic() - killed > 2.5  # not before its time (heard at most 0.2 s before)
    log = procs.log("g1.log")
    assert "no controller answered at" in log and "giving up" in log
    kept = list((tmp_path / "g1.outbox").glob("*/T*.json"))
    assert len(kept) == 1
    assert "1 unacknowledged reports kept in" in log
    assert json.loads(kept[0].read_text())["type"] == "RESULT"


def test_a_driver_lost_before_the_end_is_told_when_it_comes_back(
    tmp_path: Path, procs: Procs, ipc: str
) -> None:
    """b is stopped (SIGSTOP) until the controller has lost it, a finishes the campaign;
    the controller stays, and b, resumed, is told SHUTDOWN and exits 0. The controller then
    leaves at once rather than at the end of its wait."""
    spec = branin(
        tmp_path,
        strategy={"method": "sobol"},
        budget={"trials": 2},
        execution={"heartbeat_interval": 0.2, "heartbeat_timeout": 1, "retries": 5},
    )
    db = tmp_path / "l.db"
    ctl = procs.controller(spec, db, ipc)
    a, b = _lose_b_while_a_works(procs, ipc, db, ctl)
    try:
        procs.wait_for(
            lambda: "waiting up to" in procs.log("controller.log"), 60, "the campaign end", ctl
        )
        assert "for b to reconnect" in procs.log("controller.log")
    finally:
        b.send_signal(signal.SIGCONT)
    assert procs.exit_code(a, 30) == 0, procs.log("a.log")[-3000:]
    assert procs.exit_code(b, 30) == 0, procs.log("b.log")[-3000:]
    assert "controller says shutdown" in procs.log("b.log")
    assert procs.exit_code(ctl, 30) == 0, procs.log("controller.log")[-3000:]
    assert "every driver has been told that the campaign is over" in procs.log("controller.log")
    assert count(db, "SELECT COUNT(*) FROM trials WHERE status = 'completed'") == 2


def test_the_give_up_default_is_the_same_everywhere() -> None:
    """`loopctl driver --help` names the SDK's default without importing the SDK."""
    assert CLI_DEFAULT == GIVE_UP_AFTER


def test_a_signal_ends_the_wait_for_a_driver_that_does_not_come_back(
    tmp_path: Path, procs: Procs, ipc: str
) -> None:
    """b stays stopped: the controller would wait out its bound for it; SIGTERM ends the
    wait at once, and the log names the driver that was not told."""
    spec = branin(
        tmp_path,
        strategy={"method": "sobol"},
        budget={"trials": 2},
        execution={"heartbeat_interval": 0.2, "heartbeat_timeout": 1, "retries": 5},
    )
    db = tmp_path / "s.db"
    ctl = procs.controller(spec, db, ipc)
    a, _ = _lose_b_while_a_works(procs, ipc, db, ctl)  # b: killed, stopped, by the fixture
    procs.wait_for(
        lambda: "waiting up to" in procs.log("controller.log"), 60, "the campaign end", ctl
    )
    ctl.send_signal(signal.SIGTERM)
    assert procs.exit_code(ctl, 10) == 0, procs.log("controller.log")[-3000:]
    log = procs.log("controller.log")
    assert "not told that the campaign is over (a signal ended the wait): b" in log
    assert procs.exit_code(a, 30) == 0
    assert count(db, "SELECT COUNT(*) FROM events WHERE kind = 'campaign_finished'") == 1


def _lose_b_while_a_works(
    procs: Procs, ipc: str, db: Path, ctl: subprocess.Popen[str]
) -> tuple[subprocess.Popen[str], subprocess.Popen[str]]:
    """a and b connected, b stopped (SIGSTOP) and lost while the 2 trials (3 s each) are
    still to finish: the end comes after b's loss (b's trial, if it took one, is a's after
    it), and well within the controller's wait for a driver lost that recently (18 s with
    these heartbeats). b is as slow as a: a quick b could finish both trials before a even
    connects."""
    a = procs.driver(ipc, "a", "--latency", "3")
    b = procs.driver(ipc, "b", "--latency", "3")
    connected = "SELECT COUNT(*) FROM events WHERE kind = 'driver_connected'"
    procs.wait_for(lambda: count(db, connected) >= 2, 60, "a and b to connect", ctl, a, b)
    b.send_signal(signal.SIGSTOP)
    lost = "SELECT COUNT(*) FROM events WHERE kind = 'driver_lost'"
    procs.wait_for(lambda: count(db, lost) >= 1, 30, "b to be lost", ctl)
    assert count(db, "SELECT COUNT(*) FROM trials WHERE status = 'completed'") < 2
    return a, b
