"""CURVE: only drivers with an authorised key get in; loopctl refuses to listen openly."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest

from tests.conftest import TCP_ANY, Procs, count, loopctl, wait_for
from tests.specs import branin

pytestmark = pytest.mark.slow


def keys(tmp: Path) -> dict[str, Path]:
    for name in ("controller", "lab-a", "intruder", "impostor-server"):
        out = tmp / ("allowed" if name == "lab-a" else "keys")
        r = loopctl("keys", "generate", name, "--out", str(out))
        assert "fingerprint" in r.stdout
    return {
        "server_secret": tmp / "keys" / "controller.key_secret",
        "server_public": tmp / "keys" / "controller.key",
        "allowed": tmp / "allowed",
        "a": tmp / "allowed" / "lab-a.key_secret",
        "intruder": tmp / "keys" / "intruder.key_secret",
        "wrong_server": tmp / "keys" / "impostor-server.key",
    }


def events(db: Path) -> list[tuple[str, str]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT kind, payload FROM events ORDER BY seq").fetchall()
    finally:
        conn.close()


def retried(procs: Procs, log: str) -> bool:
    return "controller silent" in procs.log(log)


def test_only_authorised_drivers_get_in(tmp_path: Path, procs: Procs) -> None:
    k = keys(tmp_path)
    spec = branin(
        tmp_path,
        strategy={"method": "sobol"},
        budget={"trials": 5},
        security={"curve_secret_key": "keys/controller.key_secret", "authorized_keys": "allowed"},
    )
    db = tmp_path / "s.db"
    ctl = procs.controller(spec, db, TCP_ANY)
    ep = procs.endpoint(ctl)
    wait_for(
        lambda: count(db, "SELECT COUNT(*) FROM events WHERE kind = 'proposal_made'") > 0,
        20,
        "the controller to start",
    )
    before = events(db)
    intruder = procs.driver(
        ep, "intruder", "--key", str(k["intruder"]), "--server-key", str(k["server_public"])
    )
    impostor = procs.driver(
        ep, "confused", "--key", str(k["a"]), "--server-key", str(k["wrong_server"])
    )
    plain = procs.driver(ep, "plain")  # no keys at all
    # each has waited for a WELCOME as long as a driver does, given up and knocked again,
    # and the controller has turned the unknown key away
    for log in ("intruder.log", "confused.log", "plain.log"):
        wait_for(partial(retried, procs, log), 30, f"the driver of {log} to knock again")
    wait_for(
        lambda: (
            "refused a driver with an unknown CURVE key (fingerprint" in procs.log("controller.log")
        ),
        10,
        "the controller to refuse the intruder",
    )
    assert events(db) == before  # nobody registered, nothing recorded
    for p in (intruder, impostor, plain):
        assert p.poll() is None  # still knocking, never welcomed
    for name in ("intruder", "confused", "plain"):
        assert "welcomed" not in procs.log(f"{name}.log")
    procs.driver(ep, "lab-a", "--key", str(k["a"]), "--server-key", str(k["server_public"]))
    assert procs.exit_code(ctl, 60) == 0, procs.log("controller.log")
    drivers = {e[1] for e in events(db) if e[0] == "driver_connected"}
    assert len(drivers) == 1 and '"name":"lab-a"' in drivers.pop()


def test_handshakes_failed_for_a_wrong_or_missing_key_are_logged_and_rate_limited(
    tmp_path: Path, procs: Procs
) -> None:
    """Neither reaches the ZAP handler (the handshake fails first): the controller hears
    of them from its socket's monitor. A wrong controller key is retried by libzmq every
    100 ms: more than the 20 lines a 10 s window logs one by one."""
    k = keys(tmp_path)
    spec = branin(
        tmp_path,
        strategy={"method": "sobol"},
        security={"curve_secret_key": "keys/controller.key_secret", "authorized_keys": "allowed"},
    )
    db = tmp_path / "h.db"
    ctl = procs.controller(spec, db, TCP_ANY)
    ep = procs.endpoint(ctl)
    procs.serving(ctl, db)
    procs.driver(ep, "confused", "--key", str(k["a"]), "--server-key", str(k["wrong_server"]))
    procs.driver(ep, "plain")  # no keys at all
    refused = f"refused a connection to {ep}: "

    def logged(why: str) -> Callable[[], bool]:
        return lambda: refused + why in procs.log("controller.log")

    for why in (
        "its CURVE handshake could not be decrypted: the driver has the wrong controller key",
        "it does not use CURVE: the driver was given no --key",
    ):
        procs.wait_for(logged(why), 20, why, ctl)
    summary = re.compile(
        r"refused (\d+) connections in the last \d+ s \((\d+) logged one by one; "
        r"by code: (.*)\)"
    )

    def flooded() -> bool:
        return any(
            int(n) > int(logged) == 20
            for n, logged, _ in summary.findall(procs.log("controller.log"))
        )

    procs.wait_for(flooded, 30, "a window with more refusals than it logs", ctl)
    log = procs.log("controller.log")
    (codes,) = [c for n, logged, c in summary.findall(log) if int(n) > int(logged)][:1]
    assert "wrong_server_key" in codes
    # one by one: never more than 20 in a window (the first window ends with the first
    # summary line, each next one with the next)
    pieces = re.split(r"refused \d+ connections in the last", log)
    assert all(piece.count(refused) <= 20 for piece in pieces), [p.count(refused) for p in pieces]
    assert count(db, "SELECT COUNT(*) FROM events WHERE kind = 'driver_connected'") == 0


def test_open_bind_needs_curve_or_insecure(tmp_path: Path, procs: Procs) -> None:
    spec = branin(tmp_path, strategy={"method": "sobol"})
    r = loopctl(
        "start", str(spec), "--db", str(tmp_path / "o.db"), "--bind", "tcp://0.0.0.0:*", check=False
    )
    assert r.returncode == 1 and "--insecure" in r.stderr and "CURVE" in r.stderr
    assert not (tmp_path / "o.db").exists()
    ok = procs.controller(spec, tmp_path / "i.db", "tcp://0.0.0.0:*", "--insecure")
    wait_for(
        lambda: "listening on tcp://0.0.0.0" in procs.log("controller.log"),
        20,
        "the controller to listen",
    )
    assert ok.poll() is None
