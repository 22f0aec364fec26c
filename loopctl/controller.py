"""The event loop: sockets, timers, dispatch and accounting. No optimisation code here.

One asyncio task receives frames; everything that arrives together is handled
in one database transaction (group commit) and only then answered, so an ACK
always means "committed". Proposals run in a worker thread so heartbeats and
results keep flowing while a model fits. The handler never raises: a bad
message costs its sender an ERROR reply and a log line, nothing more.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import zmq
import zmq.asyncio

from loopctl import ledger, lifecycle, protocol
from loopctl.errors import LoopctlError, ProtocolError, StoreError, TrialError, ValidationError
from loopctl.operator import apply_command
from loopctl.security import Curve, secure_server
from loopctl.space import Space
from loopctl.spec import Spec
from loopctl.store import Batch, Store
from loopctl.strategies.base import Proposal, Strategy

log = logging.getLogger("loopctl.controller")

MAX_GROUP = 512  # frames handled in one transaction at most


class Reporter(Protocol):
    """What the controller tells a human; the CLI renders it (progress bar, logs)."""

    def update(self, status: Status) -> None: ...

    def result(self, trial: dict[str, Any], outcome: str, value: float, driver: str) -> None: ...


@dataclass
class Status:
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
    trials: set[str] = field(default_factory=set)
    ready: bool = False  # set by READY: the driver accepted the campaign's settings
    last_task: float = 0.0  # for fair dispatch: the longest-idle driver goes first
    session: str | None = None  # one per driver process: tells a reconnect from a duplicate

    @property
    def free(self) -> int:
        return self.capacity - len(self.trials)


@dataclass
class Outbox:
    """Replies collected while a batch is open; sent only after it commits.

    HEARTBEAT and ERROR replies state nothing about the database, so they go out
    even when the commit fails: drivers must not think a controller dead because
    its disk is briefly locked or full.
    """

    messages: list[tuple[bytes, protocol.Message]] = field(default_factory=list)

    def put(self, identity: bytes, msg: protocol.Message) -> None:
        self.messages.append((identity, msg))

    def regardless_of_commit(self) -> Outbox:
        return Outbox([(i, m) for i, m in self.messages if m.type in ("HEARTBEAT", "ERROR")])


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
        self.space = Space.for_spec(spec)
        self.view = ledger.DataView(store, spec, self.space)
        self.strategy = strategy
        self.target = trials or spec.budget.trials
        self.max_failed = (
            spec.budget.max_failed if spec.budget.max_failed is not None else self.target
        )
        self.exe = spec.execution
        self.reporter = reporter
        self.settings = settings or {}
        self.ctx = zmq.asyncio.Context()
        self.sock: zmq.asyncio.Socket | None = None
        self._raw: zmq.Socket[bytes] | None = None
        self._auth: Any = None
        self.endpoint = ""
        self.drivers: dict[bytes, DriverConn] = {}
        self.started = time.monotonic()
        self.stop_reason: str | None = None
        self.finished = False
        self._proposing = False
        self._wake = asyncio.Event()

    # ------------------------------------------------------------------ lifecycle

    def bind(self, endpoint: str = "tcp://127.0.0.1:*", curve: Curve | None = None) -> str:
        """Bind the ROUTER socket; returns the concrete endpoint (a free port if ``*``)."""
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 1000)
        if curve is not None:
            self._auth = secure_server(self.ctx, self.sock, curve)
        try:
            self.sock.bind(endpoint)
        except zmq.ZMQError as exc:
            self.sock.close(0)
            raise LoopctlError(f"cannot bind {endpoint}: {exc}") from None
        self.endpoint = self.sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self._raw = zmq.Socket.shadow(self.sock.underlying)
        return self.endpoint

    async def run(self) -> str:
        """Run until the budget is used, a stop condition holds or a signal arrives."""
        if self.sock is None:
            self.bind()
        self.strategy.prepare()  # before any driver is served: see Strategy.prepare
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.request_stop, f"signal {signal.Signals(sig).name}")
        self.started = time.monotonic()
        with self.store.batch() as b:
            b.add(
                "controller_started",
                None,
                {
                    "pid": os.getpid(),
                    "host": socket.gethostname(),
                    "endpoint": self.endpoint,
                    "target": self.target,
                },
            )
            self._recover(b)
        self._check_done()
        tasks = [asyncio.create_task(self._receive()), asyncio.create_task(self._tick())]
        try:
            await self._pump()
            while self.stop_reason is None:
                await self._wake.wait()
                self._wake.clear()
                await self._pump()
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
        await self._shutdown()
        return self.stop_reason or "stopped"

    def request_stop(self, reason: str, finished: bool = False) -> None:
        """Stop dispatching. ``finished``: the campaign is over (drivers are told to exit);
        otherwise (a signal, an error) drivers keep their results for a later resume."""
        if self.stop_reason is None:
            log.info("stopping: %s", reason)
            self.stop_reason = reason
            self.finished = finished
        self._wake.set()

    def _recover(self, b: Batch) -> None:
        """Trials left running by a dead controller are in doubt: their drivers may still be
        working on them. They stay pending points; a driver that reconnects holding one takes
        it back, and after a grace period of one heartbeat timeout the rest are re-queued."""
        until = time.time() + self.exe.heartbeat_timeout
        for t in self.store.trials(lifecycle.RUNNING):
            ledger.record_in_doubt(b, t["id"], until)

    async def _shutdown(self) -> None:
        assert self.sock is not None
        if self.finished:
            for d in list(self.drivers.values()):
                await self._send(d.identity, protocol.make("SHUTDOWN", reason=self.stop_reason))
        try:
            with self.store.batch() as b:
                if self.finished:
                    b.add("campaign_finished", None, {"reason": self.stop_reason})
                b.add("controller_stopped", None, {"reason": self.stop_reason, "pid": os.getpid()})
        except StoreError as exc:
            log.error("%s", exc)
        await asyncio.sleep(0.05)
        self.sock.close(linger=500)
        if self._auth is not None:
            self._auth.stop()
        self.ctx.term()

    # ------------------------------------------------------------------ receiving

    async def _receive(self) -> None:
        assert self.sock is not None
        while True:
            frames = [await self.sock.recv_multipart()]
            while len(frames) < MAX_GROUP and int(self.sock.getsockopt(zmq.EVENTS)) & zmq.POLLIN:
                frames.append(await self.sock.recv_multipart())

            def work(b: Batch, out: Outbox, frames: list[list[bytes]] = frames) -> bool:
                for parts in frames:
                    self.handle(b, parts, out)
                self._propose_inline(b, out)
                self._dispatch(b, out)
                return True

            await self._commit(work)
            self._wake.set()

    def handle(self, b: Batch, parts: list[bytes], out: Outbox) -> None:
        """Handle one incoming message; never raises."""
        if len(parts) != 2:
            log.warning(
                "dropped a message with %d frames (expected 1 after the identity)", len(parts) - 1
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
            msg = protocol.decode(frame)
        except ProtocolError as exc:
            log.warning("bad message from %s: %s", self._who(identity), exc)
            out.put(
                identity,
                protocol.make(
                    "ERROR", code=exc.code, message=str(exc), ref=protocol.message_id(frame)
                ),
            )
            return
        try:
            with b.savepoint():
                self._handle(b, identity, msg, out)
        except (TrialError, ValidationError, ProtocolError) as exc:
            code = getattr(exc, "code", "invalid_value")
            log.log(
                logging.INFO if code == "hello_first" else logging.WARNING,
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
            log.exception("internal error handling %s from %s", msg.type, self._who(identity))
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
        return d.name if d else f"unregistered peer {identity.hex()[:8]}"

    def _handle(self, b: Batch, identity: bytes, msg: protocol.Message, out: Outbox) -> None:
        now = time.monotonic()
        if msg.type == "HELLO":
            self._hello(b, identity, msg, out)
            return
        if msg.type == "COMMAND":  # an operator, not a driver: no HELLO
            done = apply_command(b, self.spec, self.space, msg.body)
            log.info("operator %s: %s", msg.body["operator"], done)
            out.put(identity, protocol.make("DONE", message=done, ref=msg.id))
            return
        d = self.drivers.get(identity)
        if d is None:
            raise ProtocolError(
                "hello_first",
                f"{msg.type} before HELLO: say HELLO first "
                "(a restarted controller forgets connections)",
            )
        d.last_seen = now
        if msg.type == "HEARTBEAT":
            out.put(identity, protocol.make("HEARTBEAT"))
        elif msg.type == "RESULT":
            self._result(b, d, msg, out)
        elif msg.type == "FAILED":
            self._failed(b, d, msg, out)
        elif msg.type == "BYE":
            self._lose(b, d, "driver_left", msg.get("reason") or "driver said BYE")
        elif msg.type == "READY":
            d.ready = True

    def _hello(self, b: Batch, identity: bytes, msg: protocol.Message, out: Outbox) -> None:
        name, session = msg.body["name"], msg.get("session")
        for other in list(self.drivers.values()):
            if other.name != name or other.identity == identity:
                continue
            if session is not None and other.session == session:
                # the same driver process on a fresh socket (it thought us gone): take over
                del self.drivers[other.identity]
                other.identity = identity
                self.drivers[identity] = other
            elif time.monotonic() - other.last_seen < self.exe.heartbeat_timeout:
                raise ProtocolError(
                    "name_in_use",
                    f"a driver named {name!r} is already connected; give each driver its "
                    "own --name",
                )
            else:
                self._lose(b, other, "driver_lost", "replaced by a new connection")
        holds = set(msg.get("holds") or [])
        d = self.drivers.get(identity)
        known = d is not None and d.name == name
        if d is None or not known:
            d = DriverConn(identity, name, msg.body["kind"], msg.body["capacity"], time.monotonic())
            self.drivers[identity] = d
        d.session = session
        d.capacity, d.last_seen = msg.body["capacity"], time.monotonic()
        # trials this driver still runs stay with it; in-doubt ones it holds are its again
        for t in self.store.trials(lifecycle.RUNNING, lifecycle.IN_DOUBT):
            if t["driver"] == name and t["id"] in holds:
                if t["status"] == lifecycle.IN_DOUBT:
                    ledger.record_reclaim(b, t["id"], name)
                d.trials.add(t["id"])
        if not known:  # a repeated HELLO on a live connection is answered, not recorded
            b.add(
                "driver_connected",
                None,
                {
                    "name": name,
                    "kind": d.kind,
                    "version": msg.body["version"],
                    "capacity": d.capacity,
                    "holds": sorted(holds),
                },
            )
            log.info("driver %s connected (%s, capacity %d)", name, d.kind, d.capacity)
        out.put(
            identity,
            protocol.make(
                "WELCOME",
                campaign=self.spec.name,
                heartbeat_interval=self.exe.heartbeat_interval,
                heartbeat_timeout=self.exe.heartbeat_timeout,
                settings=self.settings,
            ),
        )

    def _result(self, b: Batch, d: DriverConn, msg: protocol.Message, out: Outbox) -> None:
        tid = msg.body["trial"]
        before = self.store.trial(tid)
        new = ledger.record_result(
            b, self.spec, tid, msg.body["outcomes"], d.name, msg.get("metadata")
        )
        d.trials.discard(tid)
        out.put(d.identity, protocol.make("ACK", trial=tid, ref=msg.id))
        if (
            new
            and before is not None
            and before["status"] == lifecycle.RUNNING
            and before["driver"] != d.name
        ):
            self._cancel_elsewhere(tid, d, out, "completed by another driver")
        if new and self.reporter is not None:
            o = self.spec.objectives[0].name
            value = ledger.validate_outcomes(self.spec, msg.body["outcomes"])[o]["value"]
            self.reporter.result(self.store.trial(tid) or {}, o, value, d.name)

    def _failed(self, b: Batch, d: DriverConn, msg: protocol.Message, out: Outbox) -> None:
        tid = msg.body["trial"]
        status = ledger.record_failure(
            b, tid, msg.body["reason"], msg.body["retryable"], d.name, self.exe.retries
        )
        d.trials.discard(tid)
        out.put(d.identity, protocol.make("ACK", trial=tid, ref=msg.id))
        log.info(
            "trial %s failed on %s: %s (%s)",
            tid,
            d.name,
            msg.body["reason"],
            "will retry" if status == lifecycle.PROPOSED else "final",
        )

    def _cancel_elsewhere(self, tid: str, keep: DriverConn, out: Outbox, reason: str) -> None:
        for other in self.drivers.values():
            if other is not keep and tid in other.trials:
                other.trials.discard(tid)
                out.put(other.identity, protocol.make("CANCEL", trial=tid, reason=reason))

    def _lose(self, b: Batch, d: DriverConn, kind: str, reason: str) -> None:
        """A driver left or went silent: its trials go back to the queue per the retry policy."""
        for tid in sorted(d.trials):
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
        b.add(kind, None, {"name": d.name, "reason": reason})
        self.drivers.pop(d.identity, None)
        log.info("driver %s %s: %s", d.name, "left" if kind == "driver_left" else "lost", reason)

    # ------------------------------------------------------------------ dispatch

    def _dispatch(self, b: Batch, out: Outbox) -> None:
        """Send queued trials to drivers with free slots, up to max_in_flight."""
        if self.stop_reason is not None or (self.store.meta("paused") or {}).get("paused"):
            return
        queued = ledger.dispatchable(self.store, self.spec)
        if not queued:
            return
        running = len(self.store.trials(lifecycle.RUNNING, lifecycle.IN_DOUBT))
        for t in queued:
            if running >= self.exe.max_in_flight:
                break
            free = [d for d in self.drivers.values() if d.ready and d.free > 0]
            if not free:
                break
            d = max(free, key=lambda x: (x.free, -x.last_task))
            d.last_task = time.monotonic()
            deadline = time.time() + self.exe.trial_timeout if self.exe.trial_timeout else None
            attempt = ledger.record_dispatch(b, t["id"], d.name, deadline)
            d.trials.add(t["id"])
            running += 1
            out.put(
                d.identity,
                protocol.make(
                    "TASK",
                    trial=t["id"],
                    parameters=t["parameters"],
                    attempt=attempt,
                    deadline=deadline,
                ),
            )

    def _wanted(self) -> tuple[int, int, int]:
        """(candidates wanted now, completed, open) under the budget and max_in_flight."""
        counts = ledger.run_counts(self.store)
        done = counts.get(lifecycle.COMPLETED, 0)
        open_ = sum(counts.get(s, 0) for s in lifecycle.OPEN)
        want = min(self.target - done - open_, self.exe.max_in_flight - open_)
        return want, done, open_

    def _propose_inline(self, b: Batch, out: Outbox) -> None:
        """Model-free proposals (Sobol) are made inside the batch that freed the slots:
        one commit per cycle instead of two, which is what keeps many fast drivers fed."""
        if self.stop_reason is not None or self._proposing:
            return
        want, done, open_ = self._wanted()
        if want <= 0 or not self.strategy.model_free(done, open_):
            return
        data = self.view.refresh()
        self._take(b, self.strategy.propose(data, want), data.as_of)

    async def _pump(self) -> None:
        """Propose with a model, off the event loop, when slots are free; then dispatch."""
        self._report()
        if self.stop_reason is not None or self._proposing:
            return
        want, _, _ = self._wanted()
        if want <= 0:
            return
        self._proposing = True
        try:
            data = self.view.refresh()
            proposal = await asyncio.to_thread(self.strategy.propose, data, want)
        except Exception as exc:
            log.exception("proposal failed")
            self.request_stop(f"error: the strategy could not propose ({exc})")
            return
        finally:
            self._proposing = False
        await self._record(proposal, data.as_of)

    async def _record(self, proposal: Proposal, data_seq: int) -> None:
        def work(b: Batch, out: Outbox) -> bool:
            self._take(b, proposal, data_seq)
            self._dispatch(b, out)
            return True

        await self._commit(work)
        self._wake.set()

    def _take(self, b: Batch, proposal: Proposal, data_seq: int) -> None:
        if proposal.candidates:
            ledger.record_proposal(b, proposal, data_seq)
        else:
            self._take_nothing()

    def _take_nothing(self) -> None:
        """No new candidate and nothing in flight: a finite space has been used up."""
        _, _, open_ = self._wanted()
        if open_ == 0:
            self.request_stop("space exhausted: the strategy has no new candidate", finished=True)

    # ------------------------------------------------------------------ timers

    async def _tick(self) -> None:
        period = min(0.25, self.exe.heartbeat_interval / 2)
        while True:
            await asyncio.sleep(period)
            if await self._commit(self._expire) or self.stop_reason:
                self._wake.set()

    async def _commit(self, work: Callable[[Batch, Outbox], bool]) -> bool:
        """Run ``work`` in one transaction, then send the replies it collected.

        If the commit fails nothing is sent: drivers keep unacknowledged results and
        re-send them, so a full or locked disk delays a campaign but loses nothing.
        """
        out = Outbox()
        try:
            with self.store.batch() as b:
                changed = work(b, out)
        except StoreError as exc:
            log.error("%s", exc)
            await self._flush(out.regardless_of_commit())
            return False
        await self._flush(out)
        self._check_done()
        return changed

    def _expire(self, b: Batch, out: Outbox) -> bool:
        now, wall = time.monotonic(), time.time()
        changed = False
        for d in list(self.drivers.values()):
            if now - d.last_seen > self.exe.heartbeat_timeout:
                self._lose(
                    b, d, "driver_lost", f"silent for more than {self.exe.heartbeat_timeout:g} s"
                )
                changed = True
        for t in self.store.trials(lifecycle.RUNNING, lifecycle.IN_DOUBT):
            if t["deadline"] is not None and wall > t["deadline"]:
                why = (
                    "in doubt and no driver claimed it in time"
                    if t["status"] == lifecycle.IN_DOUBT
                    else "trial timed out"
                )
                status = ledger.record_interrupt(b, t["id"], why, self.exe.retries)
                for d in self.drivers.values():
                    if t["id"] in d.trials:
                        d.trials.discard(t["id"])
                        out.put(
                            d.identity,
                            protocol.make("CANCEL", trial=t["id"], reason="trial timed out"),
                        )
                log.warning("trial %s timed out (%s)", t["id"], status)
                changed = True
        if changed:
            self._dispatch(b, out)
        return changed

    def _check_done(self) -> None:
        counts = ledger.run_counts(self.store)
        completed = counts.get(lifecycle.COMPLETED, 0)
        if completed >= self.target:
            self.request_stop(f"budget: {completed} trials completed", finished=True)
        elif counts.get(lifecycle.FAILED, 0) >= self.max_failed:
            failed = counts.get(lifecycle.FAILED, 0)
            self.request_stop(f"too many failures: {failed} trials failed", finished=True)
        elif (
            self.spec.budget.wall_time
            and time.monotonic() - self.started > self.spec.budget.wall_time
        ):
            self.request_stop(f"wall time of {self.spec.budget.wall_time:g} s used", finished=True)
        elif self.spec.budget.stop_at is not None:
            best = ledger.best(self.store, self.spec)
            if (
                best is not None
                and self.spec.objectives[0].sign * (best["value"] - self.spec.budget.stop_at) >= 0
            ):
                self.request_stop(
                    f"stop condition: {best['objective']} reached {best['value']:.6g}",
                    finished=True,
                )

    # ------------------------------------------------------------------ output

    async def _flush(self, out: Outbox) -> None:
        for identity, msg in out.messages:
            await self._send(identity, msg)

    async def _send(self, identity: bytes, msg: protocol.Message) -> None:
        """ROUTER sends never block (a full or vanished peer drops the message), so a
        plain socket sharing the asyncio one's handle saves a future per message."""
        assert self._raw is not None
        try:
            self._raw.send_multipart([identity, protocol.encode(msg)], flags=zmq.NOBLOCK)
        except zmq.ZMQError as exc:  # peer gone: heartbeats will settle it
            log.debug("send to %s failed: %s", identity.hex()[:8], exc)

    def _report(self) -> None:
        if self.reporter is None:
            return
        counts = ledger.run_counts(self.store)
        self.reporter.update(
            Status(
                completed=counts.get(lifecycle.COMPLETED, 0),
                target=self.target,
                failed=counts.get(lifecycle.FAILED, 0) + counts.get(lifecycle.ABANDONED, 0),
                running=counts.get(lifecycle.RUNNING, 0),
                queued=counts.get(lifecycle.PROPOSED, 0),
                drivers=len(self.drivers),
                best=ledger.best(self.store, self.spec),
                elapsed=time.monotonic() - self.started,
            )
        )


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
