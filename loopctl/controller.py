"""The event loop: sockets, timers and the records they cause. No optimisation code here.
What goes to which driver, how many candidates to ask for, which trials expired and when
the campaign is over are decided in loopctl.policy, from the state gathered here.

One asyncio task receives frames; everything that arrives together is handled
in one database transaction (group commit) and only then answered, so an ACK
always means "committed". Proposals run in a worker thread so heartbeats and
results keep flowing while a model fits. The handler never raises: a bad
message costs its sender an ERROR reply and a log line, nothing more.

Propose-ahead: while trials run, up to ``execution.ahead`` candidates beyond
``max_in_flight`` are kept ready, proposed with the running trials as pending
points and recorded like any proposal (queued trials), so a driver that frees up
is sent one in the same transaction that records its result. A ready model-made
candidate with ``execution.refresh_after`` results newer than its data is stale:
the next proposal is made without it as a pending point and replaces it (it stays
dispatchable until then, and is withdrawn, abandoned, in the transaction that
records its replacement; see ``ProposalMade.replaces`` for replay).

Nothing fails silently. Each stage of the loop (receive, decode, handle, commit,
propose, dispatch) runs behind its own guard: a failure is logged with its
traceback, recorded (``proposal_failed`` / ``controller_error``) when it is ours
rather than a sender's, retried with back-off, and after ``MAX_CONSECUTIVE``
failures in a row the controller stops with an error, tells its drivers to shut
down and exits non-zero. A watchdog stops it the same way if one of its
long-lived tasks ever ends.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

import zmq
import zmq.asyncio
from zmq.utils.monitor import parse_monitor_message

from loopctl import costs, faults, ledger, lifecycle, operator_commands, policy, protocol
from loopctl.errors import (
    LoopctlError,
    ProtocolError,
    StoreError,
    StoreReplaced,
    TrialError,
    ValidationError,
)
from loopctl.receipts import REPORTS
from loopctl.security import Curve, fingerprint, secure_server
from loopctl.space import Space
from loopctl.spec import AUTO_TIMEOUT_FACTOR, AUTO_TIMEOUT_FIRST, AUTO_TIMEOUT_FLOOR, Spec
from loopctl.store import Batch, Event, Store
from loopctl.strategies.base import CampaignData, Proposal, Strategy

log = logging.getLogger("loopctl.controller")

MAX_GROUP = 512  # frames handled in one transaction at most
MAX_CONSECUTIVE = 3  # failures of one stage in a row before the controller gives up
BACKOFF = (1.0, 2.0, 4.0)  # seconds before a failed proposal is tried again
HELLO_BURST, HELLO_WINDOW = 10, 10.0  # HELLOs one peer may send in that many seconds
_HELD = frozenset({lifecycle.RUNNING, lifecycle.IN_DOUBT})  # a driver's, while in these


class Reporter(Protocol):
    """What the controller tells a human; the CLI renders it (progress bar, logs)."""

    def update(self, status: RunProgress) -> None: ...

    def result(self, trial: dict[str, Any], outcome: str, value: float, driver: str) -> None: ...

    def waiting(self, trial_id: str, parameters: dict[str, Any]) -> None: ...


@dataclass
class RunProgress:
    completed: int
    target: int
    failed: int
    running: int
    queued: int
    drivers: int
    best: dict[str, Any] | None
    elapsed: float


@dataclass
class DriverConn:
    identity: bytes
    name: str
    kind: str
    capacity: int
    last_seen: float
    trials: set[str] = field(default_factory=set)  # running on it: follows the database
    ready: bool = False  # set by READY on this connection: it accepted the campaign's settings
    last_task: float = 0.0  # for fair dispatch: the longest-idle driver goes first
    session: str | None = None  # one per driver process: tells a reconnect from a duplicate
    connection: int = 0  # which of its session's sockets spoke last: older ones are stale
    key: str | None = None  # its CURVE public key (z85), when CURVE is on
    # what it may report on: trials sent to it during this session, and trials its HELLO
    # said it holds (a restarted driver delivering from its outbox)
    given: set[str] = field(default_factory=set)
    holds: set[str] = field(default_factory=set)
    sent_to: dict[str, bytes] = field(default_factory=dict)  # trial -> socket its TASK went to
    fidelities: frozenset[str] | None = None  # the levels it serves (None: all)

    @property
    def free(self) -> int:
        return self.capacity - len(self.trials)


@dataclass
class PendingReplies:
    """Replies collected while a batch is open; sent only after it commits.

    HEARTBEAT and ERROR replies state nothing about the database, so they go out
    even when the commit fails: drivers must not think a controller dead because
    its disk is briefly locked or full.
    """

    messages: list[tuple[bytes, protocol.Message]] = field(default_factory=list)

    def put(self, identity: bytes, msg: protocol.Message) -> None:
        self.messages.append((identity, msg))

    def after_failed_commit(self) -> PendingReplies:
        """What may still go out when the batch did not commit: HEARTBEAT and ERROR as they
        are, and an ERROR ``not_recorded`` instead of each ACK, WELCOME and DONE, so every
        frame is answered and its sender knows to send it again. TASK and CANCEL are
        dropped: nothing was dispatched."""
        kept = []
        for identity, m in self.messages:
            if m.type in ("HEARTBEAT", "ERROR"):
                kept.append((identity, m))
            elif m.type in ("ACK", "WELCOME", "DONE"):
                kept.append(
                    (
                        identity,
                        protocol.make(
                            "ERROR",
                            code="not_recorded",
                            message=f"the controller could not record what this {m.type} "
                            "answered; nothing was recorded: send it again",
                            ref=m.get("ref"),
                            trial=m.get("trial"),
                        ),
                    )
                )
        return PendingReplies(kept)


class RefusalLog:
    """Per-frame refusals, logged one by one up to ``burst`` a window, then only counted.

    A flood of bad frames must neither flood the log nor slow the loop that writes it;
    each window that had refusals ends with one summary line, so none goes unnoticed.
    ``what`` names the refused things in that line (messages, connections). The lock is
    for refusals reported from another thread (the CURVE authenticator's).
    """

    def __init__(self, burst: int = 20, window: float = 10.0, what: str = "messages") -> None:
        self.burst, self.window, self.what = burst, window, what
        self.start = time.monotonic()
        self.count = self.logged = 0
        self.codes: dict[str, int] = {}
        self._lock = threading.Lock()

    def refused(self, level: int, code: str, fmt: str, *args: Any, exc: bool = False) -> None:
        with self._lock:
            self._flush(False)
            if level >= logging.WARNING:
                self.count += 1
                self.codes[code] = self.codes.get(code, 0) + 1
                if self.logged >= self.burst:
                    return
                self.logged += 1
        log.log(level, fmt, *args, exc_info=exc)

    def flush(self, force: bool = False) -> None:
        with self._lock:
            self._flush(force)

    def _flush(self, force: bool) -> None:
        now = time.monotonic()
        if now - self.start < self.window and not force:
            return
        if self.count:
            log.warning(
                "refused %d %s in the last %.0f s (%d logged one by one; by code: %s)",
                self.count,
                self.what,
                now - self.start,
                self.logged,
                ", ".join(f"{c} {n}" for c, n in sorted(self.codes.items())),
            )
        self.start, self.count, self.logged, self.codes = now, 0, 0, {}


# what the monitor of the drivers' socket reports: handshakes that failed before any
# message, hence before HELLO and (for a wrong or missing key) before the ZAP handler
HANDSHAKE_FAILED = zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL


def handshake_failure(event: int, value: int, curve: bool) -> tuple[str, str]:
    """(code, why) of a failed handshake, in the terms of what a driver got wrong."""
    if event == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
        if value == zmq.PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC:
            return (
                "wrong_server_key",
                "its CURVE handshake could not be decrypted: the driver has the wrong "
                "controller key (--server-key)",
            )
        if value == zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
            if curve:
                return "no_key", "it does not use CURVE: the driver was given no --key"
            return "unexpected_key", "it uses CURVE and this controller does not"
        return "handshake_protocol", f"ZMTP protocol error {value:#x}"
    try:
        why = os.strerror(value)
    except ValueError:
        why = f"error {value}"
    return "handshake_aborted", f"the connection ended during the handshake ({why})"


class Controller:
    def __init__(
        self,
        store: Store,
        spec: Spec,
        strategy: Strategy,
        *,
        trials: int | None = None,
        reporter: Reporter | None = None,
        settings: dict[str, Any] | None = None,
    ) -> None:
        self.store = store
        # never block the event loop for long on a lock held by someone else: fail the
        # batch fast (nothing is acknowledged) and let drivers re-send
        store.conn.execute("PRAGMA busy_timeout = 250")
        self.spec = spec
        self.campaign_id = store.campaign_id()
        self.spec_hash = spec.hash
        self.space = Space.for_spec(spec)
        self.view = ledger.DataView(store, spec, self.space)
        self.strategy = strategy
        self.target = trials or spec.budget.trials
        self.max_failed = (
            spec.budget.max_failed if spec.budget.max_failed is not None else self.target
        )
        self.exe = spec.execution
        self.budget = policy.Budget(
            target=self.target,
            max_in_flight=self.exe.max_in_flight,
            max_failed=self.max_failed,
            wall_time=spec.budget.wall_time,
            stop_at=spec.budget.stop_at,
            sign=spec.objectives[0].sign,
            # under manual approval the queue an operator works through is the ready list
            ahead=self.exe.ahead if self.exe.approval == "auto" else 0,
        )
        self.timeout_rule = policy.TimeoutRule(
            auto=self.exe.timeout_auto,
            fixed=self.exe.trial_timeout,
            first=AUTO_TIMEOUT_FIRST,
            floor=AUTO_TIMEOUT_FLOOR,
            factor=AUTO_TIMEOUT_FACTOR,
        )
        self.reporter = reporter
        self.settings = settings or {}
        self.ctx = zmq.asyncio.Context()
        self.sock: zmq.asyncio.Socket | None = None
        self._raw: zmq.Socket[bytes] | None = None
        self._auth: Any = None
        self.endpoint = ""
        # operator commands: see loopctl.operator_commands
        self.ops: zmq.asyncio.Socket | None = None
        self.operator_endpoint = ""
        self._ops_dir: str | None = None
        self.drivers: dict[bytes, DriverConn] = {}
        self.started = time.monotonic()
        self.stop_reason: str | None = None
        self.finished = False
        self._tell_drivers = False  # send SHUTDOWN when stopping (finished, or a fatal error)
        # after SHUTDOWN went out (see _linger): every driver that speaks is told SHUTDOWN,
        # and the names still awaited are those it may not have reached
        self._over = False
        self._awaited: set[str] = set()
        self._cut = False  # a signal during that wait ends it
        self._lost_at: dict[str, float] = {}  # driver name -> when it was last lost
        self._names: dict[bytes, str] = {}  # a connection not (or no longer) in drivers -> name
        self._proposing = False
        self._propose_after = 0.0  # monotonic time before which no proposal is tried
        self._failures: dict[str, int] = {}  # stage -> failures in a row
        self._fatal: str | None = None  # why a long-lived task ended, for the record
        self._closing = False
        self._wake = asyncio.Event()
        self._refusals = RefusalLog()
        self._handshakes = RefusalLog(what="connections")  # failed handshakes, ZAP refusals
        self._monitor: zmq.asyncio.Socket | None = None
        self._orphans: dict[str, float] = {}  # running trial -> when seen without its driver
        self._hellos: dict[bytes, list[float]] = {}  # peer -> its recent HELLOs
        self._keys = self._bound_keys()  # driver name -> the CURVE key it first came with
        self._longest = self._longest_trial()  # for trial_timeout: auto
        # ready model-made candidates (queued, never dispatched) -> the last event of the
        # data they were proposed from: how stale they are (execution.refresh_after)
        self._ready = self._ready_candidates()
        # recent durations (this run's): a model proposal's, and a trial's (moving average),
        # which decide whether ready candidates would be fresh when used (policy.ahead_pays)
        self._proposal_s: float | None = None
        self._trial_s: float | None = None

    # ------------------------------------------------------------------ lifecycle

    def bind(self, endpoint: str = "tcp://127.0.0.1:*", curve: Curve | None = None) -> str:
        """Bind the ROUTER socket; returns the concrete endpoint (a free port if ``*``)."""
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 1000)
        # a send to a peer whose connection has closed fails (EHOSTUNREACH) instead of
        # vanishing: how a HELLO under a known name learns that the old process is gone
        self.sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        if curve is not None:
            self._auth = secure_server(self.ctx, self.sock, curve, self._zap_refused)
        try:
            self.sock.bind(endpoint)
        except zmq.ZMQError as exc:
            self.sock.close(0)
            raise LoopctlError(f"cannot bind {endpoint}: {exc}") from None
        self.endpoint = self.sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self._raw = zmq.Socket.shadow(self.sock.underlying)
        self._ops_dir = tempfile.mkdtemp(prefix="loopctl-")  # mode 0700: this user only
        self.ops = self.ctx.socket(zmq.ROUTER)
        self.ops.setsockopt(zmq.LINGER, 500)
        self.operator_endpoint = f"ipc://{self._ops_dir}/operator"
        self.ops.bind(self.operator_endpoint)
        return self.endpoint

    async def run(self) -> str:
        """Run until the budget is used, a stop condition holds, a signal arrives or the
        controller cannot go on (then the reason starts with ``error``)."""
        if self.sock is None:
            self.bind()
        assert self.sock is not None
        # here rather than in bind(): only run() closes it again, before the context ends
        self._monitor = self.sock.get_monitor_socket(HANDSHAKE_FAILED)
        self.strategy.prepare()  # before any driver is served: see Strategy.prepare
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._signalled, f"signal {signal.Signals(sig).name}")
        self.started = time.monotonic()
        with self.store.batch() as b:
            b.add(
                "controller_started",
                None,
                {
                    "pid": os.getpid(),
                    "host": socket.gethostname(),
                    "endpoint": self.endpoint,
                    "operator": self.operator_endpoint,
                    "target": self.target,
                },
            )
            settings = {
                "trials": self.target,
                "endpoint": self.endpoint,
                "synchronous": self.store.synchronous,
            }
            if self.store.run_settings() != settings:  # what `resume` will use
                b.add("run_settings", None, settings)
            self._recover(b)
        self._check_done()
        tasks = [
            asyncio.create_task(self._receive(), name="receive"),
            asyncio.create_task(self._tick(), name="timer"),
            asyncio.create_task(self._operate(), name="operator"),
            asyncio.create_task(self._watch_handshakes(), name="handshake monitor"),
        ]
        for t in tasks:
            t.add_done_callback(self._watchdog)
        try:
            await self._pump()
            while self.stop_reason is None:
                await self._wake.wait()
                self._wake.clear()
                await self._pump()
            if self._tell_drivers and not tasks[0].done():
                await self._linger()
        except Exception as exc:
            self._died("main loop", exc)
        finally:
            self._closing = True
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
        await self._shutdown()
        return self.stop_reason or "stopped"

    def request_stop(self, reason: str, finished: bool = False, shutdown: bool = False) -> None:
        """Stop dispatching. ``finished``: the campaign is over (drivers are told to exit);
        ``shutdown``: the controller cannot go on (drivers are told to exit too, keeping
        what they hold for a resume); otherwise (a signal) drivers wait for a resume."""
        if self.stop_reason is None:
            (log.error if reason.startswith("error") else log.info)("stopping: %s", reason)
            self.stop_reason = reason
            self.finished = finished
            self._tell_drivers = finished or shutdown
        self._wake.set()

    def _signalled(self, reason: str) -> None:
        """SIGINT/SIGTERM: stop; after the end, stop waiting for drivers (see _linger)."""
        if self._over:
            log.info("%s: no longer waiting for drivers to be told", reason)
            self._cut = True
            self._wake.set()
        self.request_stop(reason)

    def _watchdog(self, task: asyncio.Task[None]) -> None:
        """A long-lived task ended: without it the campaign would stall with nothing said."""
        if self._closing or task.cancelled():
            return
        exc = task.exception()
        self._died(f"{task.get_name()} task", exc)

    def _died(self, what: str, exc: BaseException | None) -> None:
        why = f"{type(exc).__name__}: {exc}" if exc is not None else "it returned"
        log.critical("watchdog: the controller's %s stopped (%s)", what, why, exc_info=exc)
        self._fatal = f"the controller's {what} stopped ({why})"[:1000]
        self.request_stop(f"error: internal: {self._fatal}", shutdown=True)

    def _recover(self, b: Batch) -> None:
        """Trials left running by a dead controller are in doubt: their drivers may still be
        working on them. They stay pending points; a driver that reconnects holding one takes
        it back, and after a grace period of one heartbeat timeout the rest are re-queued."""
        until = time.time() + self.exe.heartbeat_timeout
        for t in self.store.trials(lifecycle.RUNNING):
            ledger.record_in_doubt(b, t["id"], until)

    def linger_bound(self) -> float:
        """The longest an SDK driver that lost its connection takes to say HELLO again:
        it notices silence within a heartbeat timeout (2 s before it was welcomed, or its
        back-off if longer), then waits out its back-off (at most BACKOFF_MAX, jittered)."""
        notice = max(self.exe.heartbeat_timeout, protocol.BACKOFF_MAX)
        return notice + protocol.BACKOFF_MAX * (1 + protocol.JITTER) + self.exe.heartbeat_interval

    async def _linger(self) -> None:
        """Tell every driver SHUTDOWN while still listening, and wait (up to
        :meth:`linger_bound`) for those it may not have reached: a driver whose connection
        had closed (a send to it failed: it is between two sockets) or that was lost
        within that bound (it may be reconnecting). Until then, any message from any peer
        is answered SHUTDOWN (a report is recorded and acknowledged first), so a driver
        that reconnects after the end learns that the campaign is over instead of knocking
        for ever. Drivers that got SHUTDOWN cost no wait: their BYE is not needed. A
        signal ends the wait (see _signalled)."""
        self._over = True
        now = time.monotonic()
        bound = self.linger_bound()
        present = {d.name for d in self.drivers.values()}
        awaited = {n for n, t in self._lost_at.items() if now - t < bound and n not in present}
        for d in list(self.drivers.values()):
            try:
                self._post(d.identity, self._shutdown_message())
            except zmq.ZMQError as exc:
                log.info("SHUTDOWN to %s not delivered (%s)", d.name, exc)
                awaited.add(d.name)
        self._awaited = awaited
        if not awaited:
            return
        log.info(
            "campaign over; waiting up to %.0f s for %s to reconnect and be told",
            bound,
            ", ".join(sorted(awaited)),
        )
        deadline = now + bound
        while self._awaited and not self._cut and (left := deadline - time.monotonic()) > 0:
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), left)
            except TimeoutError:
                break
        if self._awaited:
            log.warning(
                "not told that the campaign is over (%s): %s",
                "a signal ended the wait" if self._cut else f"not back within {bound:.0f} s",
                ", ".join(sorted(self._awaited)),
            )
        else:
            log.info("every driver has been told that the campaign is over")

    def _shutdown_message(self) -> protocol.Message:
        return protocol.make("SHUTDOWN", reason=self.stop_reason or "stopped")

    def _after_end(self, out: PendingReplies, identity: bytes, kind: str, name: str | None) -> None:
        """Any message after the end is answered SHUTDOWN, but a BYE, its answer: that
        driver has heard SHUTDOWN (one sent is not enough: the driver may be closing that
        socket to reconnect) and is no longer awaited."""
        if kind != "BYE":
            out.put(identity, self._shutdown_message())
        elif name is not None and name in self._awaited:
            self._awaited.discard(name)
            log.info("told %s that the campaign is over", name)

    async def _shutdown(self) -> None:
        assert self.sock is not None
        self._refusals.flush(force=True)
        self._handshakes.flush(force=True)
        if self._tell_drivers and not self._over:
            for d in list(self.drivers.values()):
                await self._send(d.identity, self._shutdown_message())
        try:
            with self.store.batch() as b:
                if self._fatal is not None:
                    b.add("controller_error", None, {"stage": "watchdog", "error": self._fatal})
                if self.finished:
                    b.add("campaign_finished", None, {"reason": self.stop_reason})
                b.add("controller_stopped", None, {"reason": self.stop_reason, "pid": os.getpid()})
        except StoreError as exc:
            log.error("%s", exc)
        await asyncio.sleep(0.05)
        if self._monitor is not None:
            self.sock.disable_monitor()
            self._monitor.close(linger=0)
        self.sock.close(linger=500)
        if self.ops is not None:
            self.ops.close(linger=500)
        if self._ops_dir is not None:
            shutil.rmtree(self._ops_dir, ignore_errors=True)
        if self._auth is not None:
            self._auth.stop()
        self.ctx.term()

    def _bound_keys(self) -> dict[str, str]:
        """A driver's name belongs to the first CURVE key it connected with, for good."""
        keys: dict[str, str] = {}
        for (payload,) in self.store.conn.execute(
            "SELECT payload FROM events WHERE kind = 'driver_connected' ORDER BY seq"
        ):
            p = json.loads(payload)
            if p.get("key"):
                keys.setdefault(p["name"], p["key"])
        return keys

    def _longest_trial(self) -> float | None:
        row = self.store.conn.execute(
            "SELECT MAX(finished_at - started_at) FROM trials WHERE status = 'completed' "
            "AND origin != 'imported' AND started_at IS NOT NULL"
        ).fetchone()
        return float(row[0]) if row and row[0] is not None else None

    def trial_timeout(self) -> float | None:
        """Seconds a driver may hold a trial: fixed, off, or (auto) ten times the slowest
        result so far and at least five minutes; a day until the first result."""
        return self.timeout_rule.seconds(self._longest)

    # ------------------------------------------------------------------ receiving

    async def _receive(self) -> None:
        assert self.sock is not None
        curve = self._auth is not None  # only then are frames' properties (User-Id) needed
        while True:
            raw = [await self.sock.recv_multipart(copy=not curve)]
            while len(raw) < MAX_GROUP and int(self.sock.getsockopt(zmq.EVENTS)) & zmq.POLLIN:
                raw.append(await self.sock.recv_multipart(copy=not curve))
            faults.inject("receive")  # outside every guard: only the watchdog catches this
            frames = [_unpack(m) for m in raw]

            def work(b: Batch, out: PendingReplies, frames: list[_Frames] = frames) -> bool:
                for parts, user in frames:
                    self.handle(b, parts, out, user)
                self._guarded(b, out, "propose", self._propose_inline)
                self._guarded(b, out, "dispatch", self._dispatch)
                return True

            await self._commit(work, partial(self._unrecorded, frames))
            self._wake.set()

    async def _watch_handshakes(self) -> None:
        """Log connections turned away before they could say anything.

        A driver with the wrong controller key or with no key at all fails the CURVE
        handshake before the ZAP handler is asked, so nothing else would log it, and its
        DEALER tries again every 100 ms: hence the rate limit. libzmq's monitor (version
        1, the only one in pyzmq's libzmq) names the endpoint that was reached, not the
        peer; by the time the event is read the connection has closed, so its address
        cannot be looked up either."""
        assert self._monitor is not None
        curve = self._auth is not None
        while True:
            ev = parse_monitor_message(await self._monitor.recv_multipart())
            if not ev["event"] & HANDSHAKE_FAILED:
                continue  # EVENT_MONITOR_STOPPED, at shutdown
            code, why = handshake_failure(ev["event"], ev["value"], curve)
            endpoint = ev["endpoint"].decode(errors="replace")
            self._handshakes.refused(
                logging.WARNING, code, "refused a connection to %s: %s", endpoint, why
            )

    def _zap_refused(self, fingerprint: str) -> None:
        """The CURVE authenticator's thread turned a key away (rate-limited here too)."""
        self._handshakes.refused(
            logging.WARNING,
            "unknown_key",
            "refused a driver with an unknown CURVE key (fingerprint %s)",
            fingerprint,
        )

    def _heartbeats(self, frame: bytes) -> protocol.Message | None:
        """The answer to a ``heartbeats`` question (`status`, the dashboard); None for
        anything else, which goes the commands' way (and is refused there if bad)."""
        try:
            msg = protocol.decode(frame)
        except ProtocolError:
            return None
        if msg.type != "COMMAND" or msg.body.get("action") != "heartbeats":
            return None
        now = time.monotonic()
        drivers = [
            {
                "name": d.name,
                "kind": d.kind,
                "capacity": d.capacity,
                "running": len(d.trials),
                "seconds_since_heard": round(now - d.last_seen, 3),
            }
            for d in self.drivers.values()
        ]
        n = len(drivers)
        return protocol.make(
            "DONE", message=f"{n} driver{'s' * (n != 1)} connected", ref=msg.id, drivers=drivers
        )

    async def _operate(self) -> None:
        """Operator commands, one transaction each, answered once committed (or refused:
        then nothing was recorded and the operator is told so)."""
        assert self.ops is not None
        while True:
            parts = await self.ops.recv_multipart()
            if len(parts) != 2:
                continue  # not from loopctl's own client: nothing to answer to
            query = self._heartbeats(parts[1])
            if query is not None:  # a question, not a command: nothing to record
                await self.ops.send_multipart([parts[0], protocol.encode(query)])
                continue
            replies: list[protocol.Message] = []

            def work(
                b: Batch, out: PendingReplies, frame: bytes = parts[1], replies: list[Any] = replies
            ) -> bool:
                replies.append(operator_commands.answer(b, self.spec, self.space, frame))
                self._guarded(b, out, "dispatch", self._dispatch)
                return True

            if not await self._commit(work):
                replies = [
                    protocol.make(
                        "ERROR",
                        code="not_recorded",
                        message="the controller cannot write its database right now; "
                        "nothing was recorded: try again",
                        ref=protocol.message_id(parts[1]),
                    )
                ]
            await self.ops.send_multipart([parts[0], protocol.encode(replies[0])])
            self._wake.set()

    def _unrecorded(self, frames: list[_Frames], out: PendingReplies) -> None:
        """Answer frames taken from the socket for a batch that could not even begin (another
        program holds the database's write lock, the disk is read-only): as if their batch
        had failed to commit. A HEARTBEAT or READY of a known driver records nothing and is
        handled; anything else is answered ``not_recorded``, so that its sender sends it
        again (the SDK keeps its reports, and says HELLO again after a refused HELLO)."""
        now = time.monotonic()
        for parts, _user in frames:
            if not parts:
                continue
            identity = parts[0]
            try:
                msg = protocol.decode(parts[1]) if len(parts) == 2 else None
            except ProtocolError:
                msg = None
            d = self.drivers.get(identity)
            if msg is not None and d is not None and msg.type in ("HEARTBEAT", "READY"):
                d.last_seen = now
                if msg.type == "HEARTBEAT":
                    out.put(identity, protocol.make("HEARTBEAT"))
                else:
                    d.ready = True
                continue
            out.put(
                identity,
                protocol.make(
                    "ERROR",
                    code="not_recorded",
                    message="the controller cannot write its database right now; nothing "
                    "was recorded: send it again",
                    ref=msg.id if msg is not None else protocol.message_id(parts[-1]),
                    trial=msg.get("trial") if msg is not None else None,
                ),
            )

    def handle(
        self, b: Batch, parts: list[bytes], out: PendingReplies, user: str | None = None
    ) -> None:
        """Handle one incoming message; never raises but StoreError (the batch failed).

        ``user``: the sender's CURVE public key, when CURVE is on."""
        try:
            self._handle_frame(b, parts, out, user)
        except StoreError:
            raise
        except Exception as exc:  # a bug must not take the campaign down, nor go unanswered
            identity = parts[0] if parts else b""
            self._refusals.refused(
                logging.ERROR,
                "internal",
                "internal error with a message from %s",
                self._who(identity),
                exc=True,
            )
            if identity:
                out.put(identity, protocol.make("ERROR", code="internal", message=str(exc)[:500]))

    def _handle_frame(
        self, b: Batch, parts: list[bytes], out: PendingReplies, user: str | None
    ) -> None:
        if len(parts) != 2:
            self._refusals.refused(
                logging.WARNING,
                "bad_envelope",
                "dropped a message with %d frames (expected 1 after the identity)",
                len(parts) - 1,
            )
            if parts:
                out.put(
                    parts[0],
                    protocol.make(
                        "ERROR", code="bad_envelope", message="send exactly one frame per message"
                    ),
                )
            return
        identity, frame = parts
        try:
            faults.inject("decode")
            msg = protocol.decode(frame)
        except ProtocolError as exc:
            self._refusals.refused(
                logging.WARNING,
                exc.code,
                "bad message from %s: %s",
                self._who(identity),
                exc,
            )
            out.put(
                identity,
                protocol.make(
                    "ERROR", code=exc.code, message=str(exc), ref=protocol.message_id(frame)
                ),
            )
            return
        try:
            with b.savepoint():
                faults.inject("handle")
                self._handle(b, identity, msg, out, user)
        except (TrialError, ValidationError, ProtocolError) as exc:
            code = getattr(exc, "code", "invalid_value")
            self._refusals.refused(
                logging.INFO if code == "hello_first" else logging.WARNING,
                code,
                "%s from %s refused: %s",
                msg.type,
                self._who(identity),
                exc,
            )
            out.put(
                identity,
                protocol.make(
                    "ERROR", code=code, message=str(exc), ref=msg.id, trial=msg.get("trial")
                ),
            )
        except StoreError:
            raise
        except Exception as exc:  # a bug must not take the campaign down
            self._refusals.refused(
                logging.ERROR,
                "internal",
                "internal error handling %s from %s",
                msg.type,
                self._who(identity),
                exc=True,
            )
            out.put(
                identity,
                protocol.make(
                    "ERROR",
                    code="internal",
                    message=str(exc)[:500],
                    ref=msg.id,
                    trial=msg.get("trial"),
                ),
            )

    def _who(self, identity: bytes) -> str:
        d = self.drivers.get(identity)
        return d.name if d else f"unregistered peer {identity.hex()}"

    def _handle(
        self,
        b: Batch,
        identity: bytes,
        msg: protocol.Message,
        out: PendingReplies,
        user: str | None,
    ) -> None:
        now = time.monotonic()
        if self._over and msg.type == "HELLO":  # nothing to welcome it to: nothing recorded
            self._names[identity] = msg.body["name"]
            self._after_end(out, identity, msg.type, msg.body["name"])
            return
        if msg.type == "HELLO":
            self._hello(b, identity, msg, out, user)
            return
        if msg.type == "COMMAND":
            raise ProtocolError(
                "not_operator",
                "operator commands are taken on the controller's operator socket only, "
                "which only its user on its machine can reach: run loopctl approve/pause/... "
                "there",
            )
        d = self.drivers.get(identity)
        if d is None and self._over:  # a reconnect would only be told SHUTDOWN: tell it now
            self._after_end(out, identity, msg.type, self._names.get(identity))
            return
        if d is None:
            raise ProtocolError(
                "hello_first",
                f"{msg.type} before HELLO: say HELLO first "
                "(a restarted controller forgets connections)",
            )
        if user is not None and d.key is not None and user != d.key:
            raise ProtocolError("key_mismatch", "this connection said HELLO with another key")
        d.last_seen = now
        if msg.type == "HEARTBEAT":
            out.put(identity, protocol.make("HEARTBEAT"))
        elif msg.type == "RESULT":
            self._result(b, d, msg, out)
        elif msg.type == "FAILED":
            self._failed(b, d, msg, out)
        elif msg.type == "RELEASE":
            self._release(b, d, msg, out)
        elif msg.type == "BYE":
            self._lose(b, d, "driver_left", msg.get("reason") or "driver said BYE")
        elif msg.type == "READY":
            d.ready = True
        if self._over:  # its report, if any, is recorded and acknowledged first
            self._after_end(out, identity, msg.type, d.name)

    def _hello(
        self,
        b: Batch,
        identity: bytes,
        msg: protocol.Message,
        out: PendingReplies,
        user: str | None,
    ) -> None:
        name, session = msg.body["name"], msg.get("session")
        connection = msg.get("connection") or 0
        now = time.monotonic()
        bound = self._keys.get(name)
        if user is not None and bound is not None and bound != user:
            raise ProtocolError(
                "name_taken",
                f"the driver name {name!r} belongs to another CURVE key (fingerprint "
                f"{fingerprint(bound.encode())}); this key (fingerprint "
                f"{fingerprint(user.encode())}) must use a name of its own",
            )
        serves = self._serves(msg.get("fidelities"))
        self._admit(identity, name)
        current = self.drivers.get(identity)
        if current is not None and current.name != name:
            # one socket, a new name: what it ran under the old one will not be reported
            # under that name again, so it goes back to the queue now rather than never
            self._lose(b, current, "driver_left", f"its connection said HELLO again as {name!r}")
        holds = self._held(msg.get("holds"))
        for other in list(self.drivers.values()):
            if other.name != name or other.identity == identity:
                continue
            if session is not None and other.session == session:
                if connection < other.connection:
                    # queued on a socket the driver has already replaced: nobody reads its
                    # answer, and taking the driver over would strand its live socket
                    log.info("ignored a stale HELLO of %s (socket %d)", name, connection)
                    out.put(
                        identity,
                        protocol.make(
                            "ERROR",
                            code="stale_connection",
                            message=f"this driver is on a newer connection ({other.connection})",
                            ref=msg.id,
                        ),
                    )
                    return
                # the same driver process on a fresh socket (it thought us gone): take over
                del self.drivers[other.identity]
                other.identity = identity
                self.drivers[identity] = other
            else:
                self._replace(b, other, holds)
        d = self.drivers.get(identity)
        known = d is not None
        if d is None:
            d = DriverConn(identity, name, msg.body["kind"], msg.body["capacity"], now)
            self.drivers[identity] = d
        d.session, d.connection, d.key, d.holds = session, connection, user, holds
        d.capacity, d.last_seen, d.fidelities = msg.body["capacity"], now, serves
        d.ready = False  # no TASK before this connection has said READY
        # a TASK that went to a socket the driver has since left never reached it: the
        # trial is not coming back from there, so it goes back to the queue
        for tid in sorted(d.trials - holds):
            if d.sent_to.get(tid) != identity:
                status = ledger.record_interrupt(
                    b,
                    tid,
                    f"driver {name} reconnected without it (the task was lost with its "
                    "old connection)",
                    self.exe.retries,
                )
                d.trials.discard(tid)
                log.warning("trial %s lost on %s's old connection: %s", tid, name, status)
        # trials this driver still runs stay with it; in-doubt ones it holds are its again
        for t in self.store.trials(lifecycle.RUNNING, lifecycle.IN_DOUBT):
            if t["driver"] == name and t["id"] in holds:
                if t["status"] == lifecycle.IN_DOUBT:
                    ledger.record_reclaim(b, t["id"], name)
                d.trials.add(t["id"])
                d.sent_to[t["id"]] = identity
        if not known:  # a repeated HELLO on a live connection is answered, not recorded
            event: dict[str, Any] = {
                "name": name,
                "kind": d.kind,
                "version": msg.body["version"],
                "capacity": d.capacity,
                "holds": sorted(holds),
            }
            if user is not None:
                event["key"] = user
                self._keys.setdefault(name, user)
            if serves is not None:
                event["fidelities"] = sorted(serves)
            b.add("driver_connected", None, event)
            log.info("driver %s connected (%s, capacity %d)", name, d.kind, d.capacity)
        out.put(
            identity,
            protocol.make(
                "WELCOME",
                campaign=self.spec.name,
                heartbeat_interval=self.exe.heartbeat_interval,
                heartbeat_timeout=self.exe.heartbeat_timeout,
                settings=self.settings,
                campaign_id=self.campaign_id,
                spec_hash=self.spec_hash,
            ),
        )

    def _serves(self, declared: list[str] | None) -> frozenset[str] | None:
        """The levels a HELLO says its driver serves, each one the campaign has."""
        if declared is None:
            return None
        levels = self.spec.fidelities.names if self.spec.fidelities is not None else ()
        unknown = [f for f in declared if f not in levels]
        if unknown:
            has = f"its levels are {', '.join(levels)}" if levels else "it has no `fidelities`"
            raise ProtocolError(
                "unknown_fidelity",
                f"this campaign has no fidelity {unknown[0]!r} ({has}); "
                "give --fidelity one of its levels",
            )
        return frozenset(declared)

    def _replace(self, b: Batch, old: DriverConn, holds: set[str]) -> None:
        """A HELLO from another process under ``old``'s name: a restart once the old
        process is gone, a twin (refused ``name_in_use``) while it lives.

        Gone is decided by the old connection itself, not only by its heartbeats: the
        ROUTER is ROUTER_MANDATORY, and a send to a peer whose connection has closed fails
        with EHOSTUNREACH. A killed process's connection closes at once (its kernel closes
        the socket), so a driver restarted under its name is welcomed back at once instead
        of being refused until the old connection's heartbeat timeout. What this cannot see
        is a peer whose connection stays open: a hung process, or a host that lost power
        without closing its TCP connections; those are gone only after the heartbeat
        timeout, as before.

        A matching CURVE key is not taken as proof of a restart, although under CURVE a name
        only ever reaches here with its bound key (``name_taken`` first): a key says who may
        use the name, not that the process that used it is dead. Two live processes started
        with one key and name (a copy-pasted service file) would each take the name back
        from the other at every heartbeat, and every take-over re-queues the other's trials.

        The old connection's trials follow the rules of any reconnect: those the new
        HELLO ``holds`` (results in its outbox) stay running on the name and are delivered,
        not run again; the others died with the old process and go back to the queue under
        the retry policy."""
        silent = time.monotonic() - old.last_seen
        if silent >= self.exe.heartbeat_timeout:
            why = f"silent for {silent:.0f} s; replaced by a new connection"
        elif not self._connected(old.identity):
            why = "its connection closed; a new process took over its name"
        else:
            raise ProtocolError(
                "name_in_use",
                f"a driver named {old.name!r} is already connected; give each driver its "
                "own --name",
            )
        self._lose(b, old, "driver_lost", why, keep=holds)

    def _connected(self, identity: bytes) -> bool:
        """Whether the ROUTER still has a connection to ``identity``. The probe is a
        HEARTBEAT, which a live driver takes as the controller's sign of life and
        nothing more; a full queue (EAGAIN) is a live, if slow, peer."""
        try:
            self._post(identity, protocol.make("HEARTBEAT"))
        except zmq.ZMQError as exc:
            return exc.errno != zmq.EHOSTUNREACH
        return True

    def _admit(self, identity: bytes, name: str) -> None:
        """A HELLO that would add a driver, refused before anything is recorded when the
        campaign has its fill (execution.max_drivers) or the same peer keeps saying HELLO:
        a flood of peers must not crowd out the honest drivers' heartbeats and results."""
        now = time.monotonic()
        recent = [t for t in self._hellos.get(identity, ()) if now - t < HELLO_WINDOW]
        recent.append(now)
        self._hellos[identity] = recent
        if len(recent) > HELLO_BURST:
            raise ProtocolError(
                "slow_down",
                f"more than {HELLO_BURST} HELLOs in {HELLO_WINDOW:g} s from this connection; "
                "wait before saying HELLO again",
            )
        joins = identity not in self.drivers and all(d.name != name for d in self.drivers.values())
        if joins and len(self.drivers) >= self.exe.max_drivers:
            raise ProtocolError(
                "too_many_drivers",
                f"{len(self.drivers)} drivers are connected, the campaign's limit "
                "(execution.max_drivers); try again when one has left",
            )

    def _held(self, holds: list[str] | None) -> set[str]:
        """This campaign's trials among a HELLO's ``CAMPAIGN_ID/TRIAL`` entries."""
        mine = f"{self.campaign_id}/"
        return {h[len(mine) :] for h in holds or () if h.startswith(mine)}

    def _reported_trial(self, d: DriverConn, msg: protocol.Message) -> str:
        """The trial of a RESULT, FAILED or RELEASE, once it is sure to be this campaign's and this
        driver's to report: sent to it in this session or held by it at HELLO (a restarted
        driver delivering from its outbox), and dispatched to its name at some point."""
        return self._reported(d, msg)[0]

    def _reported(self, d: DriverConn, msg: protocol.Message) -> tuple[str, dict[str, Any]]:
        """:meth:`_reported_trial`, with the trial's row as it read it (in the open batch)."""
        tid: str = msg.body["trial"]
        theirs = (msg.body["campaign_id"], msg.body["spec_hash"])
        if theirs != (self.campaign_id, self.spec_hash):
            raise ProtocolError(
                "wrong_campaign",
                f"{msg.type} for trial {tid} belongs to campaign {theirs[0]} (spec "
                f"{theirs[1][:12]}), not to this controller's campaign {self.spec.name!r} "
                f"({self.campaign_id}, spec {self.spec_hash[:12]}); nothing was recorded: keep "
                "it for the controller of its own campaign",
            )
        t = self.store.trial(tid)
        if t is None:
            raise TrialError("unknown_trial", f"no trial {tid!r} in this campaign")
        if t["status"] in lifecycle.TERMINAL and t["driver"] == d.name:
            return tid, t  # its own report again (after a reconnect): acknowledged, not recorded
        # a running trial's driver is the one its last trial_dispatched named: then it was
        # dispatched to this name, and the log need not be searched to know it
        dispatched_here = t["driver"] == d.name and t["status"] in _HELD
        if not (
            (tid in d.given or tid in d.holds)
            and (dispatched_here or self.store.sent_to(tid, d.name))
        ):
            raise TrialError(
                "not_holder",
                f"trial {tid} is not held by driver {d.name}: a driver reports only trials "
                "sent to it (or, after a restart, listed in its HELLO); nothing was recorded",
            )
        return tid, t

    def _result(self, b: Batch, d: DriverConn, msg: protocol.Message, out: PendingReplies) -> None:
        tid, before = self._reported(d, msg)
        new = ledger.record_result(
            b,
            self.spec,
            tid,
            msg.body["outcomes"],
            d.name,
            msg.get("metadata"),
            msg.get("cost"),
            row=before,
        )
        d.trials.discard(tid)
        out.put(d.identity, self._ack(tid, d, msg, b.events[-1] if new else None))
        if new and before["started_at"] is not None:
            took = time.time() - before["started_at"]
            self._longest = took if self._longest is None else max(self._longest, took)
            self._trial_s = took if self._trial_s is None else 0.7 * self._trial_s + 0.3 * took
        if new and before["status"] == lifecycle.RUNNING and before["driver"] != d.name:
            self._cancel_elsewhere(tid, d, out, "completed by another driver")
        if new and self.reporter is not None:
            o = self.spec.objectives[0].name
            value = ledger.validate_outcomes(self.spec, msg.body["outcomes"])[o]["value"]
            self.reporter.result(self.store.trial(tid) or {}, o, value, d.name)

    def _failed(self, b: Batch, d: DriverConn, msg: protocol.Message, out: PendingReplies) -> None:
        tid = self._reported_trial(d, msg)
        status = ledger.record_failure(
            b, tid, msg.body["reason"], msg.body["retryable"], d.name, self.exe.retries
        )
        d.trials.discard(tid)
        out.put(d.identity, self._ack(tid, d, msg))
        log.info(
            "trial %s failed on %s: %s (%s)",
            tid,
            d.name,
            msg.body["reason"],
            "will retry" if status == lifecycle.PROPOSED else "final",
        )

    def _release(self, b: Batch, d: DriverConn, msg: protocol.Message, out: PendingReplies) -> None:
        """Put back unmeasured. Only while this driver still has it: the same RELEASE sent
        again after a reconnect finds it queued (or elsewhere) and is just acknowledged."""
        tid = self._reported_trial(d, msg)
        t = self.store.trial(tid)
        held = (lifecycle.RUNNING, lifecycle.IN_DOUBT)
        if t is not None and t["status"] in held and t["driver"] == d.name:
            ledger.record_release(b, tid, msg.body["reason"], d.name)
            log.info("trial %s put back by %s: %s", tid, d.name, msg.body["reason"])
        d.trials.discard(tid)
        if msg.get("leaving"):  # its BYE follows: a TASK now would be lost with it
            d.ready = False
        out.put(d.identity, self._ack(tid, d, msg))

    def _ack(
        self, tid: str, d: DriverConn, msg: protocol.Message, recorded: Event | None = None
    ) -> protocol.Message:
        """An ACK with its receipt: the sequence number and hash of the event that recorded
        this report (read inside the open batch, so also for a report sent again, which
        gets the receipt of its first recording). The driver keeps receipts; `audit
        --receipts` later finds any acknowledged report that is no longer in the log, which
        the log alone cannot show (a restored backup or a lost WAL is consistent in itself).
        ``recorded``: the event this very report was just recorded by (no need to look)."""
        body: dict[str, Any] = {"trial": tid, "ref": msg.id, "campaign_id": self.campaign_id}
        if recorded is not None:
            body.update(seq=recorded.seq, hash=recorded.hash, event=recorded.kind)
            return protocol.make("ACK", **body)
        row = self.store.conn.execute(
            f"SELECT seq, hash, kind FROM events WHERE trial_id = ? AND kind IN ({REPORTS}) "
            "AND json_extract(payload, '$.driver') = ? ORDER BY seq DESC LIMIT 1",
            (tid, d.name),
        ).fetchone()
        if row is not None:
            body.update(seq=row[0], hash=row[1], event=row[2])
        return protocol.make("ACK", **body)

    def _cancel_elsewhere(
        self, tid: str, keep: DriverConn, out: PendingReplies, reason: str
    ) -> None:
        for other in self.drivers.values():
            if other is not keep and tid in other.trials:
                other.trials.discard(tid)
                out.put(other.identity, protocol.make("CANCEL", trial=tid, reason=reason))

    def _lose(
        self, b: Batch, d: DriverConn, kind: str, reason: str, keep: set[str] | None = None
    ) -> None:
        """A driver left or went silent: its trials go back to the queue per the retry policy,
        but for those in ``keep``: a restarted process under its name holds them."""
        for tid in sorted(d.trials - (keep or set())):
            t = self.store.trial(tid)
            if t is not None and t["status"] == lifecycle.RUNNING and t["driver"] == d.name:
                status = ledger.record_interrupt(
                    b, tid, f"driver {d.name}: {reason}", self.exe.retries
                )
                log.warning(
                    "trial %s of driver %s %s",
                    tid,
                    d.name,
                    "re-queued" if status == lifecycle.PROPOSED else "abandoned",
                )
        d.trials.clear()
        if kind == "driver_lost":  # it may be reconnecting: see _linger
            self._lost_at[d.name] = time.monotonic()
            self._names[d.identity] = d.name
        b.add(kind, None, {"name": d.name, "reason": reason})
        self.drivers.pop(d.identity, None)
        log.info("driver %s %s: %s", d.name, "left" if kind == "driver_left" else "lost", reason)

    # ------------------------------------------------------------------ failures

    def _guarded(
        self,
        b: Batch,
        out: PendingReplies,
        stage: str,
        step: Callable[[Batch, PendingReplies], None],
    ) -> None:
        """Run one stage inside the batch; if it fails, undo only its own writes (the
        messages handled before it still commit), record the failure and carry on.
        Proposals count as recovered only once one is made (see _take), not when a
        step merely had nothing to do."""
        try:
            with b.savepoint():
                step(b, out)
        except StoreError:
            raise
        except Exception as exc:
            self._stage_failed(b, stage, exc)
        else:
            if stage != "propose":
                self._failures.pop(stage, None)

    def _stage_failed(self, b: Batch | None, stage: str, exc: BaseException) -> None:
        """Log (with the traceback), record, and either retry later or stop for good."""
        n = self._failures[stage] = self._failures.get(stage, 0) + 1
        text = f"{type(exc).__name__}: {exc}"[:1000]
        give_up = n >= MAX_CONSECUTIVE
        if give_up:
            action = "stopping the campaign"
        elif stage == "propose":
            delay = BACKOFF[min(n, len(BACKOFF)) - 1]
            self._propose_after = time.monotonic() + delay
            action = f"trying again in {delay:g} s"
        else:
            action = "carrying on"
        log.error("%s failed (%d in a row): %s; %s", stage, n, text, action, exc_info=exc)
        kind = "proposal_failed" if stage == "propose" else "controller_error"
        payload = {"stage": stage, "error": text, "failures": n, "action": action}
        if b is not None:
            b.add(kind, None, payload)
        else:
            try:
                with self.store.batch() as b2:
                    b2.add(kind, None, payload)
            except Exception as rec_exc:
                log.error("could not record the failure either: %s", rec_exc)
        if give_up:
            self.request_stop(
                f"error: {stage} failed {n} times in a row; last error: {text}", shutdown=True
            )

    # ------------------------------------------------------------------ dispatch

    def _dispatch(self, b: Batch, out: PendingReplies) -> None:
        """Send queued trials to drivers with free slots, up to max_in_flight."""
        if self.stop_reason is not None or (self.store.meta("paused") or {}).get("paused"):
            return
        faults.inject("dispatch")
        queued = ledger.dispatchable(self.store, self.spec)
        if not queued:
            return
        counts = self.view.run_counts()  # the fold, caught up on this batch's events too
        running = counts.get(lifecycle.RUNNING, 0) + counts.get(lifecycle.IN_DOUBT, 0)
        timeout = self.trial_timeout()
        slots = [
            policy.Slot(d.identity, d.free, d.last_task, d.ready, d.fidelities)
            for d in self.drivers.values()
        ]
        trials = {t["id"]: t for t in queued}
        levels, affordable = self._fidelity_rules(b, running)
        for a in policy.assign(
            list(trials), slots, running, self.exe.max_in_flight, levels, affordable
        ):
            d, tid = self.drivers[a.driver], a.trial
            d.last_task = time.monotonic()
            deadline = policy.deadline(time.time(), timeout)
            attempt = ledger.record_dispatch(b, tid, d.name, deadline, row=trials[tid])
            d.trials.add(tid)
            d.given.add(tid)
            d.sent_to[tid] = d.identity
            out.put(
                d.identity,
                protocol.make(
                    "TASK",
                    trial=tid,
                    parameters=trials[tid]["parameters"],
                    attempt=attempt,
                    deadline=deadline,
                    fidelity=levels.get(tid) if levels is not None else None,
                    campaign_id=self.campaign_id,
                    spec_hash=self.spec_hash,
                ),
            )

    def _fidelity_rules(
        self, b: Batch, running: int
    ) -> tuple[dict[str, str | None] | None, Callable[[str], bool] | None]:
        """Campaigns with fidelities: each trial's level (its drivers must serve it) and,
        with a cost budget, whether one more trial fits (see loopctl.costs). Queued trials
        that cannot fit while nothing runs would wait for ever: they are abandoned, and
        the strategy (told what is left) proposes within the budget again."""
        fid = self.spec.fidelities
        if fid is None:
            return None, None
        trials = self.view.trial_costs()
        levels: dict[str, str | None] = {tid: t.fidelity or fid.target for tid, t in trials.items()}
        budget = self.spec.budget.cost
        if budget is None:
            return levels, None
        spent = [costs.committed(fid, trials)]

        def affordable(tid: str) -> bool:
            if not costs.fits(fid, budget, spent[0], levels[tid]):
                return False
            spent[0] += costs.level_cost(fid, levels[tid])
            return True

        if running == 0:
            for tid, t in trials.items():
                if t.queued and not costs.fits(fid, budget, spent[0], levels[tid]):
                    ledger.record_abandon(
                        b, tid, f"its cost would take the campaign beyond budget.cost {budget:g}"
                    )
        return levels, affordable

    def _wanted(self, replacing: int = 0) -> tuple[int, int, int]:
        """(candidates wanted now, completed, open) under the budget and max_in_flight plus
        ahead, when ``replacing`` of the open trials are to be withdrawn."""
        tally = policy.Tally.of(self.view.run_counts())
        if replacing:
            tally = dataclasses.replace(tally, open=tally.open - replacing)
        want = policy.proposals_wanted(self.budget, tally)
        fid, budget = self.spec.fidelities, self.spec.budget.cost
        if fid is not None and budget is not None and want > 0:
            left = costs.room(fid, budget, self.view.trial_costs())
            if left < min(level.cost for level in fid.levels) * (1 - 1e-9):
                want = 0  # not even the cheapest level fits: the campaign winds down
        return want, tally.completed, tally.open

    def _ahead_only(self, open_: int) -> bool:
        """Every slot is taken: what is wanted now is ready candidates only."""
        return open_ >= self.exe.max_in_flight

    def _ahead_pays(self) -> bool:
        return policy.ahead_pays(
            self._proposal_s, self._trial_s, self.exe.max_in_flight, self.exe.refresh_after
        )

    def _may_propose(self) -> bool:
        return policy.may_propose(
            self.stop_reason is not None, self._proposing, time.monotonic(), self._propose_after
        )

    def _propose(self, data: CampaignData, n: int) -> Proposal:
        faults.inject("propose")
        return self.strategy.propose(data, n)

    def _propose_inline(self, b: Batch, out: PendingReplies) -> None:
        """Model-free proposals (Sobol) are made inside the batch that freed the slots:
        one commit per cycle instead of two, which is what keeps many fast drivers fed."""
        if not self._may_propose():
            return
        want, done, open_ = self._wanted()
        if want <= 0 or not self.strategy.model_free(done, open_) or self._ahead_only(open_):
            return  # no ready candidates from a design: ahead is for the model's proposals
        data = self.view.refresh()
        self._take(b, self._propose(data, want), data.as_of)

    async def _pump(self) -> None:
        """Propose off the event loop, for the free slots, or once every slot is taken for
        the ready candidates missing or stale (policy.proposals_wanted); then dispatch."""
        self._report()
        if not self._may_propose():
            return
        stale = self._stale()
        want, done, open_ = self._wanted(len(stale))
        if want <= 0:
            return
        if self._ahead_only(open_) and (
            self.strategy.model_free(done, open_) or not self._ahead_pays()
        ):
            # ready candidates from the initial design would only enlarge it, and where the
            # model is slower than the drivers they would be stale by the time they are used
            return
        self._proposing = True
        began = time.monotonic()
        try:
            data = self.view.refresh(excluding=stale)
            proposal = await asyncio.to_thread(self._propose, data, want)
        except Exception as exc:
            self._stage_failed(None, "propose", exc)
            return
        finally:
            self._proposing = False
        if proposal.strategy != "sobol":
            self._proposal_s = time.monotonic() - began
        await self._record(proposal, data.as_of, stale)

    async def _record(
        self, proposal: Proposal, data_seq: int, replaces: dict[str, int] | None = None
    ) -> None:
        ids: list[str] = []

        def take(b: Batch, _: PendingReplies) -> None:
            ids.extend(self._take(b, proposal, data_seq, replaces or {}))

        def work(b: Batch, out: PendingReplies) -> bool:
            self._guarded(b, out, "propose", take)
            self._guarded(b, out, "dispatch", self._dispatch)
            return True

        if await self._commit(work) and proposal.strategy != "sobol":
            self._ready.update(dict.fromkeys(ids, data_seq))  # pruned once dispatched
        self._wake.set()

    def _take(
        self, b: Batch, proposal: Proposal, data_seq: int, replaces: dict[str, int] | None = None
    ) -> list[str]:
        """Record a proposal; withdraw the ready candidates it ``replaces`` (trial -> its
        results since) that no driver has taken meanwhile. Returns the new trials."""
        self._failures.pop("propose", None)
        if not proposal.candidates:
            self._take_nothing()  # stale candidates stay: nothing replaces them
            return []
        pid = f"P{b.store.next_number('proposals'):04d}"
        ids = ledger.record_proposal(b, proposal, data_seq, replaces=list(replaces or ()))
        for tid, news in (replaces or {}).items():
            if ledger.record_withdrawal(b, tid, news, self.exe.refresh_after, pid):
                log.info("ready candidate %s withdrawn: %d results old", tid, news)
        if self.exe.approval == "manual" and self.reporter is not None:
            for tid, c in zip(ids, proposal.candidates, strict=True):
                self.reporter.waiting(tid, c.parameters)
        return ids

    def _stale(self) -> dict[str, int]:
        """Ready model-made candidates with ``refresh_after`` or more results newer than
        their data (trial -> how many), oldest first. Not under manual approval: what an
        operator is shown must not change under their eyes."""
        if not self._ready or self.exe.refresh_after <= 0 or self.exe.approval == "manual":
            return {}
        self.view.run_counts()  # the fold catches up
        status, attempts = self.view.seen.status, self.view.seen.attempts
        for tid in [t for t in self._ready if status.get(t) != lifecycle.PROPOSED]:
            del self._ready[tid]
        for tid in [t for t in self._ready if attempts.get(t)]:
            del self._ready[tid]
        if not self._ready:
            return {}
        seqs = [
            seq
            for (seq,) in self.store.conn.execute(
                "SELECT seq FROM events WHERE seq > ? AND kind IN "
                "('trial_completed', 'trial_imported', 'trial_amended') ORDER BY seq",
                (min(self._ready.values()),),
            )
        ]
        news = {t: len(seqs) - bisect_right(seqs, s) for t, s in self._ready.items()}
        return {t: news[t] for t in policy.stale(self._ready, news, self.exe.refresh_after)}

    def _ready_candidates(self) -> dict[str, int]:
        """After a restart: the queued model-made candidates never dispatched, each with
        the data_seq of its proposal (the last proposal_made before it was proposed)."""
        ready: dict[str, int] = {}
        conn = self.store.conn
        for tid, proposal_id in conn.execute(
            "SELECT id, proposal_id FROM trials WHERE status = 'proposed' AND attempts = 0 "
            "AND origin = 'strategy' AND proposal_id IS NOT NULL"
        ):
            row = conn.execute(
                "SELECT payload FROM events WHERE kind = 'proposal_made' AND seq < ("
                "SELECT MIN(seq) FROM events WHERE trial_id = ?) ORDER BY seq DESC LIMIT 1",
                (tid,),
            ).fetchone()
            p = json.loads(row[0]) if row is not None else {}
            if p.get("id") == proposal_id and p.get("strategy") != "sobol" and p.get("data_seq"):
                ready[tid] = int(p["data_seq"])
        return ready

    def _take_nothing(self) -> None:
        """No new candidate and nothing in flight: a finite space has been used up."""
        if policy.exhausted(policy.Tally.of(self.view.run_counts())):
            self.request_stop("space exhausted: the strategy has no new candidate", finished=True)

    # ------------------------------------------------------------------ timers

    async def _tick(self) -> None:
        period = min(0.25, self.exe.heartbeat_interval / 2)
        while True:
            await asyncio.sleep(period)
            self._refusals.flush()
            self._handshakes.flush()
            if self._propose_after and time.monotonic() >= self._propose_after:
                self._propose_after = 0.0  # the back-off is over: try again
                self._wake.set()
            if await self._commit(self._expire) or self.stop_reason:
                self._wake.set()

    async def _commit(
        self,
        work: Callable[[Batch, PendingReplies], bool],
        unrecorded: Callable[[PendingReplies], None] | None = None,
    ) -> bool:
        """Run ``work`` in one transaction, then send the replies it collected.

        If the commit fails nothing is sent that depends on it, and every message that
        would have been confirmed is answered ``not_recorded``: drivers keep their
        unacknowledged results and re-send them, so a full or locked disk delays a
        campaign but loses nothing. If the transaction cannot even begin (another
        program holds the write lock), ``work`` never runs and ``unrecorded`` answers
        instead. Whatever happened, the drivers' holdings in memory are then read back
        from the database, so a rolled-back dispatch cannot leave a slot taken that no
        trial fills. (Reading them back only after a batch that did not commit whole saved
        a little CPU per result, but then any path that changes a holding in the database
        without the same change in memory leaves a slot taken for good: not worth the risk.)
        """
        out = PendingReplies()
        began = False
        try:
            try:
                with self.store.batch() as b:
                    began = True
                    changed = work(b, out)
                    faults.inject("commit")
            except StoreError as exc:
                log.error("%s", exc)
                if not began and unrecorded is not None:
                    unrecorded(out)
                if isinstance(exc, StoreReplaced):  # waiting will not bring the file back
                    self.request_stop(f"error: {exc}", shutdown=True)
                await self._flush(out.after_failed_commit())
                return False
            except Exception as exc:
                self._stage_failed(None, "commit", exc)
                await self._flush(out.after_failed_commit())
                return False
            self._failures.pop("commit", None)
            await self._flush(out)
            self._check_done()
            return changed
        finally:
            self._resync()

    def _resync(self) -> None:
        running: dict[str, set[str]] = {}
        for tid, driver in self.store.conn.execute(
            "SELECT id, driver FROM trials WHERE status = 'running'"
        ):
            running.setdefault(driver, set()).add(tid)
        for d in self.drivers.values():
            d.trials = set(running.get(d.name, ()))

    def _expire(self, b: Batch, out: PendingReplies) -> bool:
        """Settle what the clock has decided (see policy.silent and policy.expire): silent
        drivers are lost, then orphaned and overdue trials are interrupted."""
        now, wall = time.monotonic(), time.time()
        changed = False
        for peer in [p for p, ts in self._hellos.items() if now - ts[-1] > HELLO_WINDOW]:
            del self._hellos[peer]
        last_seen = {d.identity: d.last_seen for d in self.drivers.values()}
        for identity in policy.silent(last_seen, now, self.exe.heartbeat_timeout):
            self._lose(
                b,
                self.drivers[identity],
                "driver_lost",
                f"silent for more than {self.exe.heartbeat_timeout:g} s",
            )
            changed = True
        held = [
            policy.Held(
                t["id"], t["status"], t["driver"], t["attempts"], t["deadline"], t["started_at"]
            )
            for t in self.store.trials(lifecycle.RUNNING, lifecycle.IN_DOUBT)
        ]
        expired = policy.expire(
            held,
            live={d.name for d in self.drivers.values()},
            orphans=self._orphans,
            now=now,
            wall=wall,
            heartbeat_timeout=self.exe.heartbeat_timeout,
            auto_timeout=self.trial_timeout() if self.exe.timeout_auto else None,
            retries=self.exe.retries,
        )
        for e in expired.expiries:
            status = ledger.record_interrupt(b, e.trial, e.reason, self.exe.retries)
            changed = True
            if not e.timed_out:
                log.warning("trial %s had no connected driver (%s)", e.trial, status)
                continue
            for d in self.drivers.values():
                if e.trial in d.trials:
                    d.trials.discard(e.trial)
                    out.put(
                        d.identity,
                        protocol.make("CANCEL", trial=e.trial, reason="trial timed out"),
                    )
            log.warning("trial %s timed out (%s)", e.trial, status)
        self._orphans = expired.orphans
        if changed:
            self._guarded(b, out, "dispatch", self._dispatch)
        return changed

    def _check_done(self) -> None:
        counts = self.view.run_counts()
        best = None
        if self.budget.stop_at is not None:
            row = self.view.best()
            best = policy.Best(row["objective"], row["value"]) if row is not None else None
        elapsed = time.monotonic() - self.started
        reason = policy.finished(self.budget, policy.Tally.of(counts), elapsed, best)
        fid, budget = self.spec.fidelities, self.spec.budget.cost
        if reason is None and fid is not None and budget is not None:
            trials = self.view.trial_costs()
            if not any(t.queued or t.in_flight for t in trials.values()):
                spent = costs.committed(fid, trials)
                if not costs.fits(fid, budget, spent, fid.cheapest):
                    reason = f"cost budget: {spent:g} of {budget:g} spent"
        if reason is not None:
            self.request_stop(reason, finished=True)

    # ------------------------------------------------------------------ output

    async def _flush(self, out: PendingReplies) -> None:
        """The batch's replies, with one look at the socket's events after the last of them
        rather than after each (see :meth:`_send`): what that look is for is the socket's
        state once the sends are done."""
        if not out.messages:
            return
        try:
            for identity, msg in out.messages:
                try:
                    self._post(identity, msg, look=False)
                except zmq.ZMQError as exc:  # as in _send
                    log.debug("send to %s failed: %s", identity.hex(), exc)
        finally:
            assert self.sock is not None
            self.sock.get(zmq.EVENTS)

    async def _send(self, identity: bytes, msg: protocol.Message) -> None:
        """ROUTER sends never block (NOBLOCK: a full or vanished peer costs the message,
        which heartbeats and re-sent reports make up for), so a plain socket sharing the
        asyncio one's handle saves a future per message.

        libzmq signals new input once, on a descriptor that every operation on the
        socket may clear: a send that takes in the signal of a frame that has just
        arrived leaves the receive task asleep beside a readable socket until another
        frame comes (a lone driver waiting for its reply: until its heartbeat timeout).
        Asking the asyncio socket for its events afterwards wakes the receive task when
        input is pending, as pyzmq's own send does."""
        try:
            self._post(identity, msg)
        except zmq.ZMQError as exc:  # peer gone (or its queue full): heartbeats settle it
            log.debug("send to %s failed: %s", identity.hex(), exc)

    def _post(self, identity: bytes, msg: protocol.Message, look: bool = True) -> None:
        """One non-blocking send; raises EHOSTUNREACH for a peer that is not connected
        (ROUTER_MANDATORY) and EAGAIN for one whose queue is full. ``look``: at the
        socket's events afterwards (the caller does, after its last send, when False)."""
        assert self._raw is not None and self.sock is not None
        try:
            self._raw.send_multipart([identity, protocol.encode(msg)], flags=zmq.NOBLOCK)
        finally:
            if look:  # zmq.asyncio's get() schedules a waiting recv if readable
                self.sock.get(zmq.EVENTS)

    def _report(self) -> None:
        if self.reporter is None:
            return
        counts = self.view.run_counts()
        self.reporter.update(
            RunProgress(
                completed=counts.get(lifecycle.COMPLETED, 0),
                target=self.target,
                failed=counts.get(lifecycle.FAILED, 0) + counts.get(lifecycle.ABANDONED, 0),
                running=counts.get(lifecycle.RUNNING, 0),
                queued=counts.get(lifecycle.PROPOSED, 0),
                drivers=len(self.drivers),
                best=self.view.best(),
                elapsed=time.monotonic() - self.started,
            )
        )


_Frames = tuple[list[bytes], str | None]


def _unpack(parts: list[Any]) -> _Frames:
    """Frames as bytes, and the sender's CURVE key when frames came as zmq.Frame objects
    (only under CURVE, where ZeroMQ puts the authenticated key in "User-Id")."""
    if not parts or isinstance(parts[0], bytes):
        return list(parts), None
    user: str | None = None
    try:
        user = parts[-1].get("User-Id")
    except (zmq.ZMQError, AttributeError):
        user = None
    return [bytes(p.bytes) for p in parts], user or None


def driver_settings(spec: Spec) -> dict[str, Any]:
    """What every driver learns in WELCOME: the oracle set-up and the shape of a task."""
    settings: dict[str, Any] = {
        "parameters": list(spec.raw.get("space", [])),
        "objectives": [o.name for o in spec.objectives],
        "units": {o.name: o.unit for o in spec.objectives},
        "seed": spec.seed,
    }
    if spec.robot:
        settings["robot"] = dict(spec.robot)
    if spec.oracle is not None:
        o = spec.oracle
        base = str(spec.base_dir) if spec.base_dir else None
        settings["oracle"] = {
            "kind": o.kind,
            "function": o.function,
            "table": o.table,
            "latency": o.latency,
            "noise": o.noise,
            "fail_rate": o.fail_rate,
            "options": dict(o.options, base_dir=base),
        }
    return settings


def check_bindable(endpoint: str) -> None:
    """Fail early, with the endpoint in the message, if the controller could not bind."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    try:
        sock.bind(endpoint)
    except zmq.ZMQError as exc:
        raise LoopctlError(f"cannot bind {endpoint}: {exc}") from None
    finally:
        sock.close(0)
        ctx.term()


def run_controller(controller: Controller) -> str:
    return asyncio.run(controller.run())
