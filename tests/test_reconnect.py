"""A driver killed and restarted under its name is welcomed back at once; a twin is not.

The heartbeat timeout in these campaigns is long (30 s on an idle machine, scaled), so a
restarted driver that had to wait for its old connection to time out would fail the
bound on its WELCOME, which is a third of it.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TCP_ANY, Procs, count, db_rows, scaled, wait_for
from tests.specs import branin
from tests.test_security import keys

pytestmark = pytest.mark.slow

HEARTBEAT_TIMEOUT = scaled(30)
WELCOME_WITHIN = 10.0  # on an idle machine (scaled: a third of the heartbeat timeout)
WELCOMED = "welcomed by campaign"
CURVE = {"curve_secret_key": "keys/controller.key_secret", "authorized_keys": "allowed"}


def campaign(tmp: Path, trials: int, curve: bool) -> Path:
    extra: dict[str, Any] = {"security": CURVE} if curve else {}
    return branin(
        tmp,
        strategy={"method": "sobol"},
        budget={"trials": trials},
        execution={
            "max_in_flight": 1,
            "heartbeat_interval": 0.5,
            "heartbeat_timeout": HEARTBEAT_TIMEOUT,
        },
        **extra,
    )


def driver(
    procs: Procs, ep: str, name: str, log: str, outbox: str, *extra: str
) -> subprocess.Popen[str]:
    """An oracle driver with its own log file (a restart must not overwrite the first's)."""
    return procs.start(
        "-v", "driver", "oracle", "--connect", ep, "--name", name,
        "--outbox", str(procs.tmp / outbox), *extra, log=log,
    )  # fmt: skip


def curve_args(tmp: Path, curve: bool) -> tuple[str, ...]:
    if not curve:
        return ()
    k = keys(tmp)
    return ("--key", str(k["a"]), "--server-key", str(k["server_public"]))


def running_on(db: Path, name: str) -> list[str]:
    rows = db_rows(db, "SELECT id FROM trials WHERE status = 'running' AND driver = ?", name)
    return [r[0] for r in rows]


def completed_once(db: Path, trials: int) -> None:
    """Every trial completed, each recorded once: one completion, one observation."""
    assert db_rows(db, "SELECT status, COUNT(*) FROM trials GROUP BY status") == [
        ("completed", trials)
    ]
    per_trial = db_rows(
        db,
        "SELECT t.id, (SELECT COUNT(*) FROM events e WHERE e.trial_id = t.id "
        "AND e.kind = 'trial_completed'), (SELECT COUNT(*) FROM observations o "
        "WHERE o.trial_id = t.id) FROM trials t",
    )
    assert all(done == 1 and obs == 1 for _, done, obs in per_trial), per_trial


def welcome_after(procs: Procs, log: str, since: float, p: subprocess.Popen[str]) -> float:
    """Seconds from ``since`` until ``log`` says WELCOME came (``p`` must not exit first)."""
    procs.wait_for(lambda: WELCOMED in procs.log(log), WELCOME_WITHIN, f"{log}: WELCOME", p)
    return time.monotonic() - since


@pytest.mark.parametrize("curve", [False, True], ids=["plain", "curve"])
def test_a_driver_killed_mid_trial_and_restarted_is_welcomed_back_at_once(
    tmp_path: Path, procs: Procs, curve: bool
) -> None:
    cargs = curve_args(tmp_path, curve)
    spec, db = campaign(tmp_path, 3, curve), tmp_path / "r.db"
    ctl = procs.controller(spec, db, TCP_ANY)
    ep = procs.endpoint(ctl)
    first = driver(procs, ep, "lab-a", "first.log", "a.outbox", *cargs, "--latency", "60")
    procs.wait_for(lambda: bool(running_on(db, "lab-a")), 30, "a trial on lab-a", ctl, first)
    (held,) = running_on(db, "lab-a")
    first.send_signal(signal.SIGKILL)  # mid-evaluation: the trial dies with it
    procs.exit_code(first, 10)
    since = time.monotonic()
    again = driver(procs, ep, "lab-a", "again.log", "a.outbox", *cargs, "--latency", "0.1")
    took = welcome_after(procs, "again.log", since, again)
    print(f"restart to WELCOME: {took:.2f} s (heartbeat timeout {HEARTBEAT_TIMEOUT:g} s)")
    assert procs.exit_code(ctl, 60) == 0, procs.log("controller.log")
    assert procs.exit_code(again, 10) == 0, procs.tail(again)
    completed_once(db, 3)
    # the killed attempt went back to the queue once, when the restart showed it lost
    assert db_rows(db, "SELECT attempts, driver FROM trials WHERE id = ?", held) == [(2, "lab-a")]
    (reason,) = db_rows(
        db,
        "SELECT json_extract(payload, '$.reason') FROM events "
        "WHERE kind = 'trial_interrupted' AND trial_id = ?",
        held,
    )[0]
    assert "connection closed" in reason
    assert "name_in_use" not in procs.log("controller.log")
    lost = db_rows(db, "SELECT payload FROM events WHERE kind = 'driver_lost'")
    assert len(lost) == 1 and "connection closed" in json.loads(lost[0][0])["reason"]


def test_a_restarted_driver_delivers_its_held_result_without_running_it_again(
    tmp_path: Path, procs: Procs
) -> None:
    """The result is in the outbox, unacknowledged (the controller is stopped with SIGSTOP),
    when the driver is killed: the restart lists it in HELLO and delivers it; the trial is
    neither re-queued nor run a second time."""
    spec, db = campaign(tmp_path, 3, False), tmp_path / "h.db"
    ctl = procs.controller(spec, db, TCP_ANY)
    ep = procs.endpoint(ctl)
    first = driver(procs, ep, "keeper", "first.log", "k.outbox", "--latency", "1.5")
    procs.wait_for(lambda: bool(running_on(db, "keeper")), 30, "a trial on keeper", ctl, first)
    (held,) = running_on(db, "keeper")
    ctl.send_signal(signal.SIGSTOP)  # nobody acknowledges the result for now
    try:
        outbox = tmp_path / "k.outbox"
        wait_for(lambda: bool(list(outbox.rglob(f"{held}.json"))), 10, "the result in the outbox")
        first.send_signal(signal.SIGKILL)
        procs.exit_code(first, 10)
        again = driver(procs, ep, "keeper", "again.log", "k.outbox", "--latency", "0.1")
        # up, and its HELLO listing the held trial unanswered long enough to say it again
        procs.wait_for(
            lambda: "controller silent" in procs.log("again.log"), 10, "a second HELLO", again
        )
    finally:
        since = time.monotonic()
        ctl.send_signal(signal.SIGCONT)
    took = welcome_after(procs, "again.log", since, again)
    print(f"controller continued to WELCOME: {took:.2f} s")
    assert procs.exit_code(ctl, 60) == 0, procs.log("controller.log")
    completed_once(db, 3)
    kinds = [k for (k,) in db_rows(db, "SELECT kind FROM events WHERE trial_id = ?", held)]
    assert kinds == ["trial_proposed", "trial_dispatched", "trial_completed"]
    assert db_rows(db, "SELECT attempts, driver FROM trials WHERE id = ?", held) == [(1, "keeper")]
    assert not list(outbox.rglob("*.json"))  # acknowledged
    assert "name_in_use" not in procs.log("controller.log")


@pytest.mark.parametrize("curve", [False, True], ids=["plain", "curve"])
def test_a_second_live_driver_under_the_same_name_is_refused(
    tmp_path: Path, procs: Procs, curve: bool
) -> None:
    """Even with the same CURVE key: the key says who may use the name, not that the
    process that used it is gone."""
    cargs = curve_args(tmp_path, curve)
    spec, db = campaign(tmp_path, 4, curve), tmp_path / "t.db"
    ctl = procs.controller(spec, db, TCP_ANY)
    ep = procs.endpoint(ctl)
    live = driver(procs, ep, "lab-a", "live.log", "live.outbox", *cargs, "--latency", "1")
    procs.wait_for(lambda: bool(running_on(db, "lab-a")), 30, "a trial on lab-a", ctl, live)
    twin = driver(procs, ep, "lab-a", "twin.log", "twin.outbox", *cargs, "--latency", "0.1")
    assert procs.exit_code(twin, 30) == 3, procs.tail(twin)
    assert "already connected" in procs.log("twin.log")
    assert re.search(r"HELLO from unregistered peer \w+ refused: a driver named 'lab-a' is "
                     "already connected", procs.log("controller.log"))  # fmt: skip
    assert live.poll() is None
    assert procs.exit_code(ctl, 60) == 0, procs.log("controller.log")
    completed_once(db, 4)
    assert count(db, "SELECT COUNT(*) FROM events WHERE kind = 'driver_connected'") == 1
    assert count(db, "SELECT COUNT(*) FROM events WHERE kind = 'trial_interrupted'") == 0
