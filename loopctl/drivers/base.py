"""Driver SDK: a driver author writes ``evaluate(parameters) -> outcomes``; this does the rest.

The rest is the reliability of the ZeroMQ guide's "paranoid pirate": HELLO
and heartbeats, a fresh socket with back-off when the controller goes quiet,
and an on-disk outbox so a result survives the driver's and the controller's
restarts until the controller acknowledges it (at-least-once; the controller
makes repeats harmless). The outbox is kept per campaign: a result is only ever
delivered to the campaign whose TASK it answers, even when another campaign's
controller comes up on the same endpoint in the meantime.

One thread owns the socket; evaluations run in daemon threads (``capacity`` at
a time) and hand their outcome back through a queue.
"""

from __future__ import annotations

import json
import logging
import math
import os
import queue
import random
import socket
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq

from loopctl import protocol, receipts
from loopctl.errors import LoopctlError, ProtocolError
from loopctl.security import secure_client

log = logging.getLogger("loopctl.driver")

EXIT_OK, EXIT_CANNOT_EVALUATE, EXIT_REFUSED, EXIT_NO_CONTROLLER = 0, 2, 3, 4
GIVE_UP_AFTER = protocol.GIVE_UP_AFTER


class TrialFailed(Exception):
    """Raise from ``evaluate`` to report a failure; ``retryable`` asks for another attempt."""

    def __init__(self, reason: str, retryable: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable


class PutBack(Exception):
    """Raise from ``evaluate`` to hand the trial back unmeasured (a person will do it later,
    or is leaving): it goes back to the queue, and it is neither a failure nor an attempt."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class CannotEvaluate(Exception):
    """Raise from ``setup`` when the campaign asks for something this driver cannot do."""


@dataclass
class Result:
    """Return this from ``evaluate`` to attach metadata (who, how, notes) to the outcomes."""

    outcomes: dict[str, Any]
    metadata: dict[str, Any]
    cost: float | None = None  # what the trial cost, measured (campaigns with fidelities)


# what the controller says when it could not take a report *now*: keep it, send it again
TRANSIENT = frozenset({"not_recorded", "internal", "hello_first"})


@dataclass
class _Done:
    campaign: str
    trial: str
    attempt: int
    message: protocol.Message


class Outbox:
    """Unacknowledged results, one fsynced JSON file each under ``PATH/CAMPAIGN_ID/``;
    a file goes only on that campaign's ACK. Trial ids repeat across campaigns (every
    campaign has a T0001), so the campaign is part of every key."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.path.mkdir(parents=True, exist_ok=True)
        legacy = sorted(self.path.glob("*.json"))
        if legacy:  # written before outboxes knew campaigns: no controller can take them
            log.warning(
                "%d results in %s name no campaign (written by an older SDK); they are "
                "kept there and not sent",
                len(legacy),
                self.path,
            )

    def _dir(self, campaign: str) -> Path:
        if not campaign or "/" in campaign or campaign.startswith("."):
            raise ValueError(f"not a campaign id: {campaign!r}")
        return self.path / campaign

    def _file(self, campaign: str, trial: str) -> Path:
        return self._dir(campaign) / f"{trial}.json"

    def put(self, campaign: str, trial: str, msg: protocol.Message) -> None:
        folder = self._dir(campaign)
        folder.mkdir(exist_ok=True)
        tmp = folder / f".{trial}.tmp"
        data = json.dumps({"type": msg.type, "id": msg.id, "body": msg.body}).encode()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self._file(campaign, trial))
        for d in (folder, self.path):
            dfd = os.open(d, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)

    def campaigns(self) -> list[str]:
        return sorted(p.name for p in self.path.iterdir() if p.is_dir() and p.name != "rejected")

    def items(self, campaign: str | None = None) -> list[tuple[str, str, protocol.Message]]:
        """(campaign, trial, message) of one campaign, or of all."""
        out = []
        for c in [campaign] if campaign is not None else self.campaigns():
            for f in sorted(self._dir(c).glob("*.json")):
                try:
                    d = json.loads(f.read_text())
                    out.append((c, f.stem, protocol.Message(d["type"], d["body"], d["id"])))
                except (OSError, ValueError, KeyError) as exc:
                    log.error("outbox file %s is unreadable (%s); moved aside", f, exc)
                    self._set_aside(c, f.stem, f"unreadable: {exc}")
        return out

    def ack(self, campaign: str, driver: str, ack: Mapping[str, Any]) -> None:
        """Forget the report; keep the ACK's receipt first, if it carries one, so that
        `loopctl audit --receipts` can later check it is still in the log."""
        trial = ack["trial"]
        if "hash" in ack and "seq" in ack:
            receipts.append(self._dir(campaign), driver, {**ack, "campaign_id": campaign})
        self._file(campaign, trial).unlink(missing_ok=True)

    def reject(self, campaign: str, trial: str, why: str) -> None:
        if self._file(campaign, trial).exists():
            self._set_aside(campaign, trial, why)

    def _set_aside(self, campaign: str, trial: str, why: str) -> None:
        rejected = self._dir(campaign) / "rejected"
        rejected.mkdir(exist_ok=True)
        self._file(campaign, trial).replace(rejected / f"{trial}.json")
        (rejected / f"{trial}.why").write_text(why + "\n")

    def holds(self, campaign: str, trial: str) -> bool:
        return self._file(campaign, trial).exists()


class Driver:
    """Subclass and implement :meth:`evaluate`; optionally :meth:`setup`."""

    kind = "custom"
    version = "1"

    def __init__(
        self,
        connect: str,
        *,
        name: str | None = None,
        capacity: int = 1,
        outbox: str | Path | None = None,
        curve: tuple[str | Path, str | Path] | None = None,
        fidelities: Sequence[str] | None = None,
        give_up_after: float | None = GIVE_UP_AFTER,
    ) -> None:
        """``curve``: (this driver's secret key file, the controller's public key file).
        ``fidelities``: the campaign's levels this driver serves (None: all of them); the
        level of the trial under way is :meth:`current_fidelity`. ``give_up_after``:
        seconds without a word from any controller after which :meth:`run` returns
        EXIT_NO_CONTROLLER (None or 0: never): a controller that ended while this driver
        was reconnecting cannot tell it the campaign is over."""
        if give_up_after is not None and not (_finite(give_up_after) and give_up_after >= 0):
            raise ValueError(f"give_up_after must be seconds >= 0, not {give_up_after!r}")
        self.give_up_after = give_up_after or None
        self.connect = connect
        self.curve = curve
        self.fidelities = list(fidelities) if fidelities else None
        self.name = name or f"{self.kind}-{socket.gethostname()}-{os.getpid()}"
        self.capacity = capacity
        base = Path(outbox) if outbox else _state_dir() / "outbox" / self.name
        self.outbox = Outbox(base)
        self.settings: dict[str, Any] = {}
        self._ctx: zmq.Context[Any] = zmq.Context.instance()
        self._sock: zmq.Socket | None = None
        self._done: queue.Queue[_Done] = queue.Queue()
        self._wake_r, self._wake_w = os.pipe()  # workers nudge the socket loop when done
        self._thread_state = threading.local()
        self._leaving: str | None = None
        self._running: dict[tuple[str, str], threading.Thread] = {}  # (campaign, trial)
        self._leave_after: threading.Thread | None = None
        self._cancelled: set[str] = set()
        self._sent_at: dict[str, float] = {}  # this campaign's reports awaiting an ACK
        self.heartbeat_interval = 1.0
        self.heartbeat_timeout = 10.0
        self._welcomed = False
        self._configured: str | None = None  # the campaign setup() was called for
        self.campaign_id: str | None = None  # the campaign of the controller we talk to
        self.spec_hash: str | None = None
        self._session = uuid.uuid4().hex  # lets the controller tell our reconnects from a twin
        self._connection = 0  # sockets opened in this session: lets it tell stale HELLOs

    # ------------------------------------------------------------------ to override

    def setup(self, settings: Mapping[str, Any]) -> None:
        """Called with the campaign's settings from WELCOME, before the first task."""

    def evaluate(self, parameters: dict[str, Any]) -> dict[str, Any] | Result:
        raise NotImplementedError

    def cancelled(self, trial: str) -> bool:
        """Long evaluations may poll this to stop early after a CANCEL."""
        return trial in self._cancelled

    def stop(self, reason: str) -> None:
        """Leave after delivering what is done: BYE, and the controller re-queues the rest.

        Called from an evaluation (a person quitting mid-entry), the BYE waits for that
        evaluation's own report: a BYE first would make the controller count its trial as
        lost (and, with no retries left, abandon it) before the report arrived."""
        if getattr(self._thread_state, "trial", None) is not None:
            self._leave_after = threading.current_thread()
        self._leaving = reason
        os.write(self._wake_w, b"!")

    def current_trial(self) -> str:
        """The id of the trial this evaluation thread works on (for logs, cancel checks)."""
        return str(self._thread_state.trial)

    def current_fidelity(self) -> str | None:
        """The level (campaigns with `fidelities`) the trial under way is to be measured
        at; None in a campaign without levels."""
        return getattr(self._thread_state, "fidelity", None)

    # ------------------------------------------------------------------ main loop

    def run(self) -> int:
        """Serve until SHUTDOWN (exit 0), a refusal (non-zero), or ``give_up_after``
        seconds without hearing from any controller (EXIT_NO_CONTROLLER)."""
        backoff = protocol.BACKOFF_MIN
        self._open()
        last_heard = last_beat = heard = time.monotonic()  # heard: by any socket of ours
        while True:
            now = time.monotonic()
            if self.give_up_after is not None and now - heard > self.give_up_after:
                self._drain_done()  # an evaluation that has just ended is kept too
                if not self._running:  # one under way finishes first, into the outbox
                    return self._give_up(now - heard)
            if self._welcomed and now - last_beat >= self.heartbeat_interval:
                self._send(protocol.make("HEARTBEAT"))
                last_beat = now
            silence = now - last_heard
            limit = self.heartbeat_timeout if self._welcomed else max(backoff, 2.0)
            if silence > limit:
                log.warning(
                    "controller silent for %.1f s; reconnecting in %.2f s", silence, backoff
                )
                wait = jitter(backoff)
                backoff = min(backoff * 2, protocol.BACKOFF_MAX)
                assert self._sock is not None
                # listen on the old socket through the back-off: an answer that arrives
                # meanwhile (the WELCOME of a controller that came up just as we gave up
                # on it) is taken, not thrown away with the socket; a fast campaign could
                # otherwise end before the HELLO on our next socket is heard
                if self._sock.poll(int(wait * 1000)):
                    log.info("the controller answered after all; staying on this connection")
                    last_heard = time.monotonic()
                    continue
                self._reopen()
                last_heard = time.monotonic()
            # the driver itself asked to go (e.g. a person quit): once the evaluation that
            # asked has ended, its report is in the queue drained next, so it goes before BYE
            asker = self._leave_after
            leaving = self._leaving is not None and (asker is None or not asker.is_alive())
            self._drain_done()
            if leaving:
                self._send(protocol.make("BYE", reason=self._leaving))
                self._close()
                return EXIT_OK
            self._resend_stale()
            assert self._sock is not None
            ready = dict(self._poller.poll(100))
            if self._wake_r in ready:
                os.read(self._wake_r, 4096)
                continue
            if self._sock not in ready:
                continue
            frame = self._sock.recv()
            last_heard = heard = time.monotonic()
            try:
                msg = protocol.decode(frame, protocol.FROM_CONTROLLER)
            except ProtocolError as exc:
                log.error("bad message from the controller: %s", exc)
                continue
            code = self._on(msg)
            if msg.type == "WELCOME":
                backoff = protocol.BACKOFF_MIN
            if code is not None:
                self._close()
                return code

    def _give_up(self, silent: float) -> int:
        """No controller for ``give_up_after``: say so and exit, keeping every report it
        has not acknowledged (they go with the HELLO of this driver's next run)."""
        kept = self.outbox.items()
        where = f"; {len(kept)} unacknowledged reports kept in {self.outbox.path}" if kept else ""
        text = (
            f"{self.name}: no controller answered at {self.connect} for {silent:.0f} s "
            f"(give_up_after {self.give_up_after:g} s); giving up{where}"
        )
        log.error("%s", text)
        print(f"error: {text}", flush=True)
        self._close()
        return EXIT_NO_CONTROLLER

    def _on(self, msg: protocol.Message) -> int | None:
        t = msg.type
        if t == "WELCOME":
            return self._welcome(msg)
        if t == "TASK":
            self._task(msg)
        elif t == "ACK":
            campaign = msg.get("campaign_id") or self.campaign_id
            if campaign:
                self.outbox.ack(campaign, self.name, msg.body)
            self._sent_at.pop(msg.body["trial"], None)
        elif t == "CANCEL":
            self._cancelled.add(msg.body["trial"])
        elif t == "ERROR":
            return self._error(msg)
        elif t == "SHUTDOWN":
            log.info("controller says shutdown: %s", msg.get("reason", ""))
            self._send(protocol.make("BYE", reason="shutdown requested"))
            return EXIT_OK
        return None

    def _welcome(self, msg: protocol.Message) -> int | None:
        self.heartbeat_interval = float(msg.body["heartbeat_interval"])
        self.heartbeat_timeout = float(msg.body["heartbeat_timeout"])
        self.settings = dict(msg.body["settings"])
        campaign = msg.body["campaign_id"]
        if campaign != self.campaign_id:
            self._sent_at.clear()  # reports awaiting another campaign's ACK wait for it
        self.campaign_id, self.spec_hash = campaign, msg.body["spec_hash"]
        if self._configured != campaign:  # a new campaign may ask for another set-up
            try:
                self.setup(self.settings)
            except CannotEvaluate as exc:
                log.error("cannot evaluate this campaign: %s", exc)
                print(
                    f"error: {self.name} cannot evaluate campaign {msg.body['campaign']!r}: {exc}",
                    flush=True,
                )
                self._send(protocol.make("BYE", reason=f"cannot evaluate: {exc}"[:4000]))
                return EXIT_CANNOT_EVALUATE
            self._configured = campaign
        self._welcomed = True
        log.info("welcomed by campaign %s (%s)", msg.body["campaign"], campaign)
        for _, trial, stored in self.outbox.items(campaign):  # what an earlier run left behind
            self._send(stored)
            self._sent_at[trial] = time.monotonic()
        others = [c for c in self.outbox.campaigns() if c != campaign and self.outbox.items(c)]
        if others:
            log.warning(
                "keeping results for other campaigns (%s) in the outbox until their "
                "controller is back; this controller runs %s",
                ", ".join(others),
                campaign,
            )
        self._send(protocol.make("READY"))
        return None

    def _error(self, msg: protocol.Message) -> int | None:
        code, text, trial = msg.body["code"], msg.body["message"], msg.get("trial")
        if code == "hello_first":
            if self._welcomed:  # once per new controller, not once per refused message
                log.warning("controller does not know us (%s); saying HELLO again", text)
                self._welcomed = False
                self._hello()
        elif code == "name_in_use":
            if self._configured is not None:  # our own old connection still counts as alive
                log.warning("%s; retrying", text)
                self._welcomed = False
                return None
            log.error("%s", text)
            print(f"error: {text}", flush=True)
            return EXIT_REFUSED
        elif code == "unknown_fidelity":  # serves no level of this campaign as declared
            log.error("%s", text)
            print(f"error: {text}", flush=True)
            return EXIT_CANNOT_EVALUATE
        elif code == "name_taken":  # the name is bound to another CURVE key: for good
            log.error("%s", text)
            print(f"error: {text}", flush=True)
            return EXIT_REFUSED
        elif code in TRANSIENT and trial is None:
            # the controller could not take a HELLO or READY: fall silent, so that the
            # usual reconnect (with its back-off) says HELLO again on a fresh socket
            log.warning("controller could not take our message (%s): %s", code, text)
            self._welcomed = False
        elif code == "wrong_campaign" or (code in TRANSIENT and trial is not None):
            # not this controller's to record, or not recordable right now: keep it
            log.warning("controller did not take our report for %s: %s (%s)", trial, text, code)
        elif (
            trial is not None
            and self.campaign_id is not None
            and self.outbox.holds(self.campaign_id, trial)
        ):
            log.error(
                "controller refused our report for %s: %s (%s); kept in %s",
                trial,
                text,
                code,
                self.outbox.path / self.campaign_id / "rejected",
            )
            self.outbox.reject(self.campaign_id, trial, f"{code}: {text}")
            self._sent_at.pop(trial, None)
        else:
            log.error("controller error %s: %s", code, text)
        return None

    def _task(self, msg: protocol.Message) -> None:
        trial, campaign = msg.body["trial"], msg.body["campaign_id"]
        if (campaign, trial) in self._running:
            return  # a repeated TASK for work under way
        self._cancelled.discard(trial)
        th = threading.Thread(
            target=self._work,
            daemon=True,
            name=f"trial-{trial}",
            args=(
                (campaign, msg.body["spec_hash"]),
                trial,
                int(msg.body["attempt"]),
                dict(msg.body["parameters"]),
                msg.get("fidelity"),
            ),
        )
        self._running[campaign, trial] = th
        th.start()

    def _work(
        self,
        campaign: tuple[str, str],
        trial: str,
        attempt: int,
        parameters: dict[str, Any],
        fidelity: str | None = None,
    ) -> None:
        self._thread_state.trial = trial
        self._thread_state.fidelity = fidelity
        ids = {"campaign_id": campaign[0], "spec_hash": campaign[1]}
        try:
            got = self.evaluate(parameters)
            outcomes, extra = (got.outcomes, got.metadata) if isinstance(got, Result) else (got, {})
            cost = got.cost if isinstance(got, Result) else None
            if cost is not None and not (_finite(cost) and cost >= 0):
                raise TrialFailed(f"evaluate returned a cost of {cost!r}; give a number >= 0")
            bad = [k for k, v in _values(outcomes) if not _finite(v)]
            if bad:
                raise TrialFailed(f"evaluate returned a non-finite value for {', '.join(bad)}")
            msg = protocol.make(
                "RESULT",
                trial=trial,
                outcomes=outcomes,
                metadata={**extra, "attempt": attempt, "driver_version": self.version},
                cost=cost,
                **ids,
            )
        except TrialFailed as exc:
            msg = protocol.make(
                "FAILED", trial=trial, reason=exc.reason[:4000], retryable=exc.retryable, **ids
            )
        except PutBack as exc:
            leaving = {"leaving": True} if self._leaving is not None else {}
            msg = protocol.make("RELEASE", trial=trial, reason=exc.reason[:4000], **leaving, **ids)
        except Exception as exc:  # an evaluation bug is a failure of this trial, not the driver
            log.exception("evaluate raised for trial %s", trial)
            msg = protocol.make(
                "FAILED",
                trial=trial,
                reason=f"{type(exc).__name__}: {exc}"[:4000],
                retryable=False,
                **ids,
            )
        self._done.put(_Done(campaign[0], trial, attempt, msg))
        os.write(self._wake_w, b"!")

    def _drain_done(self) -> None:
        while True:
            try:
                done = self._done.get_nowait()
            except queue.Empty:
                return
            self.outbox.put(done.campaign, done.trial, done.message)  # persist before sending
            log.info("report %s %s", done.message.type, json.dumps(done.message.body))
            self._running.pop((done.campaign, done.trial), None)
            if done.campaign == self.campaign_id:  # else it waits for its own controller
                self._send(done.message)
                self._sent_at[done.trial] = time.monotonic()

    def _resend_stale(self) -> None:
        """At-least-once: re-send reports the controller has not acknowledged in a while."""
        if not self._welcomed or self.campaign_id is None:
            return
        now = time.monotonic()
        stale = [t for t, at in self._sent_at.items() if now - at > self.heartbeat_timeout]
        if not stale:
            return
        for _, trial, msg in self.outbox.items(self.campaign_id):
            if trial in stale:
                self._send(msg)
                self._sent_at[trial] = now

    # ------------------------------------------------------------------ socket

    def _open(self) -> None:
        self._sock = self._ctx.socket(zmq.DEALER)
        self._sock.setsockopt(zmq.LINGER, 500)
        if self.curve is not None:
            secure_client(self._sock, *self.curve)
        try:
            self._sock.connect(self.connect)
        except zmq.ZMQError as exc:
            self._sock.close(0)
            raise LoopctlError(
                f"cannot connect to {self.connect!r}: {exc} (expected e.g. tcp://127.0.0.1:5555)"
            ) from None
        self._poller = zmq.Poller()
        self._poller.register(self._sock, zmq.POLLIN)
        self._poller.register(self._wake_r, zmq.POLLIN)
        self._welcomed = False
        self._connection += 1
        self._hello()

    def _hello(self) -> None:
        """``holds`` names each trial with its campaign: the controller takes back only its
        own, and may then accept our reports for them even from a new session."""
        held = set(self._running) | {(c, t) for c, t, _ in self.outbox.items()}
        self._send(
            protocol.make(
                "HELLO",
                session=self._session,
                connection=self._connection,
                name=self.name,
                kind=self.kind,
                version=self.version,
                capacity=self.capacity,
                holds=sorted(f"{c}/{t}" for c, t in held),
                fidelities=self.fidelities,
            )
        )

    def _reopen(self) -> None:
        self._close()
        self._open()

    def _close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _send(self, msg: protocol.Message) -> None:
        assert self._sock is not None
        try:
            self._sock.send(protocol.encode(msg), flags=zmq.NOBLOCK)
        except zmq.Again:
            log.debug("send queue full; %s will be retried", msg.type)


def _values(outcomes: Any) -> list[tuple[str, Any]]:
    if not isinstance(outcomes, Mapping):
        raise TrialFailed(
            f"evaluate must return a mapping of objective to value, got {type(outcomes).__name__}"
        )
    out = []
    for k, v in outcomes.items():
        if isinstance(v, (tuple, list)):
            out += [(k, x) for x in v]
        elif isinstance(v, Mapping):
            out += [(k, x) for x in v.values() if x is not None]
        else:
            out.append((k, v))
    return out


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _state_dir() -> Path:
    return Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local" / "state")) / "loopctl"


def jitter(seconds: float) -> float:
    """Spread reconnects so drivers restarted together do not knock in lockstep."""
    return seconds * (1 - protocol.JITTER + 2 * protocol.JITTER * random.random())
