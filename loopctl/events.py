"""The catalogue of event kinds: what each one means, written once.

An event kind used to be defined in five places (the SQL projection in ``store``, the
in-memory fold of ``ledger.DataView``, ``lifecycle.TRANSITIONS``, the payloads written by
``ledger.record_*`` and the audit's descriptions), which could drift apart, and the
projection skipped a kind it did not know. Here every kind has one :class:`Kind` entry in
:data:`CATALOGUE`: its payload type, the trial statuses it may be applied to, its effect on
the derived tables, its effect on what strategies see, and how an audit says it in words.
Adding a kind means adding one entry; a kind without one is refused when written and when
read.

Payloads stay the JSON objects the log has always held (their canonical text is what the
hash chain covers, so no field is renamed; the few optional fields added since, such as a
trial's ``fidelity``, are written only when set): the dataclasses below describe them
and :func:`parse` checks a payload against its kind's before any fold uses it. Keys a
dataclass does not name are accepted when read (an older loopctl may have written them)
but refused when written, so that a typo cannot enter the log.
"""

from __future__ import annotations

import json
import sqlite3
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from enum import StrEnum
from typing import Any, Union

from loopctl import lifecycle as lc
from loopctl.canonical import canonical
from loopctl.errors import TrialError


class EventKind(StrEnum):
    """Every kind of event; the values are the strings in the log since format 1."""

    CAMPAIGN_CREATED = "campaign_created"
    CONTROLLER_STARTED = "controller_started"
    CONTROLLER_STOPPED = "controller_stopped"
    CAMPAIGN_FINISHED = "campaign_finished"
    RUN_SETTINGS = "run_settings"
    PROPOSAL_MADE = "proposal_made"
    TRIAL_PROPOSED = "trial_proposed"
    TRIAL_IMPORTED = "trial_imported"
    TRIAL_DISPATCHED = "trial_dispatched"
    TRIAL_COMPLETED = "trial_completed"
    TRIAL_AMENDED = "trial_amended"
    TRIAL_FAILED = "trial_failed"
    TRIAL_INTERRUPTED = "trial_interrupted"
    TRIAL_ABANDONED = "trial_abandoned"
    TRIAL_RELEASED = "trial_released"
    TRIAL_IN_DOUBT = "trial_in_doubt"
    TRIAL_RECLAIMED = "trial_reclaimed"
    TRIAL_APPROVED = "trial_approved"
    TRIAL_REJECTED = "trial_rejected"
    CAMPAIGN_PAUSED = "campaign_paused"
    CAMPAIGN_UNPAUSED = "campaign_unpaused"
    DRIVER_CONNECTED = "driver_connected"
    DRIVER_LOST = "driver_lost"
    DRIVER_LEFT = "driver_left"
    PROPOSAL_FAILED = "proposal_failed"
    CONTROLLER_ERROR = "controller_error"


class PayloadError(ValueError):
    """An event whose kind is unknown or whose payload does not fit its kind. A ValueError,
    so that an audit reports a tampered event as one that cannot be applied."""


@dataclass(frozen=True)
class Event:
    seq: int
    time: float
    kind: str
    trial_id: str | None
    payload: dict[str, Any]
    hash: str


# ---------------------------------------------------------------------- payloads

# An outcome as recorded: {"value": v, "sem": s | None} per metric (ledger.validate_outcomes).
Outcomes = dict[str, dict[str, Any]]


@dataclass(frozen=True, slots=True)
class CampaignCreated:
    spec: dict[str, Any]
    spec_hash: str
    format: int | None = None
    campaign_id: str | None = None  # absent in databases made before it existed
    versions: dict[str, Any] | None = None
    host: str | None = None
    source: str | None = None


@dataclass(frozen=True, slots=True)
class ControllerStarted:
    pid: int | None = None
    host: str | None = None
    endpoint: str | None = None
    operator: str | None = None
    target: int | None = None


@dataclass(frozen=True, slots=True)
class ControllerStopped:
    reason: str | None = None
    pid: int | None = None


@dataclass(frozen=True, slots=True)
class CampaignFinished:
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class RunSettings:
    trials: int | None = None
    endpoint: str | None = None
    synchronous: str | None = None


@dataclass(frozen=True, slots=True)
class ProposalMade:
    id: str
    number: int
    strategy: str
    version: str
    seed: int
    trial_ids: list[str]
    diagnostics: dict[str, Any]
    sobol_drawn: int = 0
    data_seq: int | None = None  # the last event the strategy saw, for replay
    # ready candidates this proposal replaces: left out of its pending points (and withdrawn
    # when it is recorded, unless a driver took them meanwhile); replay leaves them out too
    replaces: list[str] | None = None


@dataclass(frozen=True, slots=True)
class TrialProposed:
    number: int
    origin: str
    parameters: dict[str, Any]
    proposal_id: str | None = None
    operator: str | None = None  # a suggestion's author
    fidelity: str | None = None  # campaigns with `fidelities`: the level it is measured at


@dataclass(frozen=True, slots=True)
class TrialImported:
    number: int
    origin: str
    parameters: dict[str, Any]
    outcomes: Outcomes
    source: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TrialDispatched:
    driver: str
    attempt: int
    deadline: float | None = None


@dataclass(frozen=True, slots=True)
class TrialCompleted:
    outcomes: Outcomes
    driver: str | None = None
    attempt: int | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    cost: float | None = None  # what the driver measured it cost (else its level's cost)


@dataclass(frozen=True, slots=True)
class TrialAmended:
    outcomes: Outcomes
    previous: Outcomes
    reason: str | None = None
    operator: str | None = None


@dataclass(frozen=True, slots=True)
class TrialSettled:
    """trial_failed, trial_interrupted, trial_abandoned, trial_released: ``status`` is where
    the trial goes (back to proposed, or a terminal status)."""

    reason: str
    status: str
    retryable: bool | None = None
    driver: str | None = None
    attempt: int | None = None


@dataclass(frozen=True, slots=True)
class TrialInDoubt:
    reason: str
    deadline: float | None = None  # the grace period
    driver: str | None = None
    run_deadline: float | None = None  # the deadline it had while running


@dataclass(frozen=True, slots=True)
class TrialReclaimed:
    reason: str
    driver: str | None = None
    deadline: float | None = None


@dataclass(frozen=True, slots=True)
class OperatorDecision:
    operator: str
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class PauseChange:
    operator: str


@dataclass(frozen=True, slots=True)
class DriverConnected:
    name: str
    kind: str | None = None
    version: str | None = None
    capacity: int | None = None
    holds: list[str] | None = None
    key: str | None = None  # its CURVE public key, when security is on
    fidelities: list[str] | None = None  # the levels it serves (absent: all)


@dataclass(frozen=True, slots=True)
class DriverGone:
    name: str
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Failure:
    stage: str | None = None
    error: str | None = None
    failures: int | None = None
    action: str | None = None


# ---------------------------------------------------------------------- checking payloads

Check = Callable[[Any], bool]


def _outcomes_ok(v: Any) -> bool:
    return isinstance(v, dict) and all(
        isinstance(o, dict) and _number(o.get("value")) for o in v.values()
    )


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _checker(hint: Any) -> Check:
    """A predicate for one annotated payload field (the few shapes payloads use)."""
    if hint is Any:
        return lambda v: True
    if hint == Outcomes:
        return _outcomes_ok
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        parts = [_checker(a) for a in args]
        if len(parts) == 1 and len(args) < len(typing.get_args(hint)):  # X | None
            inner = parts[0]
            return lambda v: v is None or inner(v)
        return lambda v: any(p(v) for p in parts) or (v is None and type(None) in args)
    if hint is type(None):
        return lambda v: v is None
    if hint is float:
        return _number
    if hint is int:
        return lambda v: isinstance(v, int) and not isinstance(v, bool)
    if origin is list:
        (item,) = typing.get_args(hint)
        inner = _checker(item)
        return lambda v: isinstance(v, list) and all(inner(x) for x in v)
    if origin is dict:
        return lambda v: isinstance(v, dict)
    if isinstance(hint, type):
        kind: type = hint
        return lambda v: isinstance(v, kind)
    raise TypeError(f"events: no check for payload field type {hint!r}")


@dataclass(frozen=True)
class _Schema:
    fields: tuple[tuple[str, bool, Check], ...]  # name, required, check
    names: frozenset[str]


def _schema(cls: type) -> _Schema:
    hints = typing.get_type_hints(cls)
    out = []
    for f in fields(cls):
        required = f.default is MISSING and f.default_factory is MISSING
        out.append((f.name, required, _checker(hints[f.name])))
    return _Schema(tuple(out), frozenset(f.name for f in fields(cls)))


# ---------------------------------------------------------------------- the derived tables


def _set_meta(conn: sqlite3.Connection, key: str, value: Any) -> None:
    conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, canonical(value)))


def _p_created(conn: sqlite3.Connection, ev: Event) -> None:
    p = ev.payload
    for key in ("format", "spec", "spec_hash", "versions", "source"):
        _set_meta(conn, key, p.get(key))
    if "campaign_id" in p:  # databases made before it existed derive theirs (campaign_id())
        _set_meta(conn, "campaign_id", p["campaign_id"])
    _set_meta(conn, "created_at", ev.time)


def _p_controller(conn: sqlite3.Connection, ev: Event) -> None:
    _set_meta(
        conn, "controller", dict(ev.payload, at=ev.time, running=ev.kind == "controller_started")
    )


def _p_controller_stopped(conn: sqlite3.Connection, ev: Event) -> None:
    _p_controller(conn, ev)
    conn.execute(
        "UPDATE drivers SET status = 'gone', updated_at = ?, reason = ? WHERE status = 'connected'",
        (ev.time, "controller stopped"),
    )


def _p_run_settings(conn: sqlite3.Connection, ev: Event) -> None:
    row = conn.execute("SELECT value FROM meta WHERE key = 'run_settings'").fetchone()
    merged = json.loads(row[0]) if row else {}
    merged.update({k: v for k, v in ev.payload.items() if v is not None})
    _set_meta(conn, "run_settings", merged)


def _p_finished(conn: sqlite3.Connection, ev: Event) -> None:
    _set_meta(conn, "finished", dict(ev.payload, at=ev.time))


def _p_proposal(conn: sqlite3.Connection, ev: Event) -> None:
    p = ev.payload
    conn.execute(
        "INSERT INTO proposals (id, number, strategy, version, seed, trial_ids, "
        "sobol_drawn, diagnostics, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            p["id"],
            p["number"],
            p["strategy"],
            p["version"],
            p["seed"],
            canonical(p["trial_ids"]),
            p.get("sobol_drawn", 0),
            canonical(p["diagnostics"]),
            ev.time,
        ),
    )


def _p_trial_new(conn: sqlite3.Connection, ev: Event) -> None:
    p = ev.payload
    status = "completed" if ev.kind == "trial_imported" else "proposed"
    conn.execute(
        "INSERT INTO trials (id, number, status, origin, proposal_id, parameters, "
        "created_at, finished_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            ev.trial_id,
            p["number"],
            status,
            p["origin"],
            p.get("proposal_id"),
            canonical(p["parameters"]),
            ev.time,
            ev.time if status == "completed" else None,
        ),
    )
    if ev.kind == "trial_imported":
        _insert_outcomes(conn, ev)


def _insert_outcomes(conn: sqlite3.Connection, ev: Event) -> None:
    for metric, o in ev.payload["outcomes"].items():
        conn.execute(
            "INSERT OR REPLACE INTO observations (trial_id, metric, value, sem, "
            "recorded_at) VALUES (?, ?, ?, ?, ?)",
            (ev.trial_id, metric, o["value"], o.get("sem"), ev.time),
        )


def _p_dispatched(conn: sqlite3.Connection, ev: Event) -> None:
    p = ev.payload
    conn.execute(
        "UPDATE trials SET status = 'running', driver = ?, attempts = ?, started_at = ?, "
        "deadline = ?, finished_at = NULL, reason = NULL WHERE id = ?",
        (p["driver"], p["attempt"], ev.time, p.get("deadline"), ev.trial_id),
    )


def _p_completed(conn: sqlite3.Connection, ev: Event) -> None:
    conn.execute(
        "UPDATE trials SET status = 'completed', driver = ?, finished_at = ?, "
        "deadline = NULL, reason = NULL WHERE id = ?",
        (ev.payload.get("driver"), ev.time, ev.trial_id),
    )
    _insert_outcomes(conn, ev)


def _p_amended(conn: sqlite3.Connection, ev: Event) -> None:
    conn.execute("DELETE FROM observations WHERE trial_id = ?", (ev.trial_id,))
    _insert_outcomes(conn, ev)


def _p_settled(conn: sqlite3.Connection, ev: Event) -> None:
    """trial_failed / trial_interrupted / trial_abandoned: terminal or back to the queue."""
    status = ev.payload["status"]
    conn.execute(
        "UPDATE trials SET status = ?, finished_at = ?, deadline = NULL, reason = ? WHERE id = ?",
        (status, ev.time if status != "proposed" else None, ev.payload.get("reason"), ev.trial_id),
    )


def _p_released(conn: sqlite3.Connection, ev: Event) -> None:
    """Back to the queue as if never sent: the attempt is given back."""
    conn.execute(
        "UPDATE trials SET status = 'proposed', attempts = attempts - 1, started_at = NULL, "
        "deadline = NULL, reason = ? WHERE id = ?",
        (ev.payload.get("reason"), ev.trial_id),
    )


def _p_in_doubt(conn: sqlite3.Connection, ev: Event) -> None:
    """in_doubt: the deadline becomes the grace period; reclaimed: back to running."""
    status = "in_doubt" if ev.kind == "trial_in_doubt" else "running"
    conn.execute(
        "UPDATE trials SET status = ?, deadline = ?, reason = ? WHERE id = ?",
        (status, ev.payload.get("deadline"), ev.payload.get("reason"), ev.trial_id),
    )


def _p_operator(conn: sqlite3.Connection, ev: Event) -> None:
    """An operator's decision on a trial: approved waits for dispatch, rejected is final."""
    if ev.kind == "trial_approved":
        conn.execute("UPDATE trials SET status = 'approved' WHERE id = ?", (ev.trial_id,))
    else:
        conn.execute(
            "UPDATE trials SET status = 'rejected', finished_at = ?, reason = ? WHERE id = ?",
            (ev.time, ev.payload.get("reason"), ev.trial_id),
        )


def _p_pause(conn: sqlite3.Connection, ev: Event) -> None:
    _set_meta(conn, "paused", dict(ev.payload, at=ev.time, paused=ev.kind == "campaign_paused"))


def _p_driver(conn: sqlite3.Connection, ev: Event) -> None:
    p = ev.payload
    if ev.kind == "driver_connected":
        conn.execute(
            "INSERT OR REPLACE INTO drivers (name, kind, version, capacity, status, "
            "connected_at, updated_at, reason) VALUES (?, ?, ?, ?, 'connected', ?, ?, NULL)",
            (p["name"], p.get("kind"), p.get("version"), p.get("capacity"), ev.time, ev.time),
        )
    else:
        status = "lost" if ev.kind == "driver_lost" else "gone"
        conn.execute(
            "UPDATE drivers SET status = ?, updated_at = ?, reason = ? WHERE name = ?",
            (status, ev.time, p.get("reason"), p["name"]),
        )


def _p_error(conn: sqlite3.Connection, ev: Event) -> None:
    """proposal_failed / controller_error: `loopctl status` shows the last one."""
    _set_meta(conn, "last_error", dict(ev.payload, kind=ev.kind, at=ev.time))


# ---------------------------------------------------------------------- what strategies see


@dataclass
class Seen:
    """What strategies are shown of a campaign, folded from its events: the parameters,
    status and outcomes of each trial (in the order they were proposed) and the counters
    that keep a strategy's Sobol sequence and seed moving forward."""

    params: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    status: dict[str, str] = field(default_factory=dict)
    outcomes: dict[str, dict[str, tuple[float, float | None]]] = field(default_factory=dict)
    proposals: int = 0
    sobol_drawn: int = 0
    fidelity: dict[str, str] = field(default_factory=dict)  # trials that name their level
    attempts: dict[str, int] = field(default_factory=dict)  # dispatches (for their cost)
    measured: dict[str, float] = field(default_factory=dict)  # costs drivers reported


def _v_proposal(s: Seen, tid: str | None, p: Mapping[str, Any]) -> None:
    s.proposals += 1
    s.sobol_drawn += int(p.get("sobol_drawn", 0))


def _v_new(s: Seen, tid: str | None, p: Mapping[str, Any]) -> None:
    if tid is not None:
        s.params[tid] = p["parameters"]
        s.status[tid] = lc.PROPOSED
        if p.get("fidelity") is not None:
            s.fidelity[tid] = p["fidelity"]


def _v_outcomes(s: Seen, tid: str | None, p: Mapping[str, Any]) -> None:
    if tid is not None:
        s.status[tid] = lc.COMPLETED
        s.outcomes[tid] = {m: (o["value"], o.get("sem")) for m, o in p["outcomes"].items()}


def _v_completed(s: Seen, tid: str | None, p: Mapping[str, Any]) -> None:
    _v_outcomes(s, tid, p)
    if tid is not None and p.get("cost") is not None:
        s.measured[tid] = float(p["cost"])


def _v_dispatched(s: Seen, tid: str | None, p: Mapping[str, Any]) -> None:
    if tid is not None:
        s.status[tid] = lc.RUNNING
        s.attempts[tid] = s.attempts.get(tid, 0) + 1


def _v_released(s: Seen, tid: str | None, p: Mapping[str, Any]) -> None:
    _v_settled(s, tid, p)
    if tid is not None:
        s.attempts[tid] = s.attempts.get(tid, 1) - 1


def _v_imported(s: Seen, tid: str | None, p: Mapping[str, Any]) -> None:
    _v_new(s, tid, p)
    _v_outcomes(s, tid, p)


def _v_to(status: str) -> Callable[[Seen, str | None, Mapping[str, Any]], None]:
    def step(s: Seen, tid: str | None, p: Mapping[str, Any]) -> None:
        if tid is not None:
            s.status[tid] = status

    return step


def _v_settled(s: Seen, tid: str | None, p: Mapping[str, Any]) -> None:
    if tid is not None:
        s.status[tid] = p["status"]


# ---------------------------------------------------------------------- the audit's words


def _outcomes(o: Mapping[str, Mapping[str, Any]]) -> str:
    return ", ".join(f"{m}={v['value']:.6g}" for m, v in o.items())


def _d_completed(p: Mapping[str, Any]) -> str:
    operator = (p.get("metadata") or {}).get("operator")
    by = f", entered by {operator}" if operator else ""
    cost = f", cost {p['cost']:g}" if p.get("cost") is not None else ""
    return f"completed: {_outcomes(p['outcomes'])} ({p.get('driver')}{by}{cost})"


def _d_proposed(p: Mapping[str, Any]) -> str:
    at = f" at fidelity {p['fidelity']}" if p.get("fidelity") is not None else ""
    return f"proposed ({p.get('origin')}){at}"


def _d_connected(p: Mapping[str, Any]) -> str:
    serves = f", serves {', '.join(p['fidelities'])}" if p.get("fidelities") else ""
    return f"driver {p['name']} connected ({p.get('kind')}{serves})"


# ---------------------------------------------------------------------- the catalogue

Project = Callable[[sqlite3.Connection, Event], None]
Fold = Callable[[Seen, str | None, Mapping[str, Any]], None]
Describe = Callable[[Mapping[str, Any]], str]


@dataclass(frozen=True)
class Kind:
    """Everything one kind of event means. ``allowed_from``: the trial statuses it may be
    applied to (None: it is not a step of a trial's lifecycle checked by ledger)."""

    payload: type
    project: Project
    describe: Describe
    fold: Fold | None = None
    allowed_from: frozenset[str] | None = None
    schema: _Schema = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "schema", _schema(self.payload))


K = EventKind
_RUNNING = frozenset({lc.RUNNING, lc.IN_DOUBT})
_QUEUED = frozenset({lc.PROPOSED, lc.APPROVED})

CATALOGUE: dict[EventKind, Kind] = {
    K.CAMPAIGN_CREATED: Kind(
        CampaignCreated, _p_created, lambda p: f"campaign created (spec {p['spec_hash'][:12]})"
    ),
    K.CONTROLLER_STARTED: Kind(
        ControllerStarted,
        _p_controller,
        lambda p: f"controller started, pid {p.get('pid')} at {p.get('endpoint')}",
    ),
    K.CONTROLLER_STOPPED: Kind(
        ControllerStopped,
        _p_controller_stopped,
        lambda p: f"controller stopped: {p.get('reason')}",
    ),
    K.CAMPAIGN_FINISHED: Kind(
        CampaignFinished, _p_finished, lambda p: f"campaign finished: {p.get('reason')}"
    ),
    K.RUN_SETTINGS: Kind(
        RunSettings,
        _p_run_settings,
        lambda p: (
            f"run with {p.get('trials')} trials at {p.get('endpoint')}, sync {p.get('synchronous')}"
        ),
    ),
    K.PROPOSAL_MADE: Kind(
        ProposalMade,
        _p_proposal,
        lambda p: f"{p['id']} by {p['strategy']} ({p['version']}): {', '.join(p['trial_ids'])}",
        fold=_v_proposal,
    ),
    K.TRIAL_PROPOSED: Kind(TrialProposed, _p_trial_new, _d_proposed, fold=_v_new),
    K.TRIAL_IMPORTED: Kind(
        TrialImported,
        _p_trial_new,
        lambda p: f"imported from {p.get('source')}: {_outcomes(p['outcomes'])}",
        fold=_v_imported,
    ),
    K.TRIAL_DISPATCHED: Kind(
        TrialDispatched,
        _p_dispatched,
        lambda p: f"sent to {p['driver']} (attempt {p['attempt']})",
        fold=_v_dispatched,
        allowed_from=_QUEUED,
    ),
    # a result is accepted whenever it arrives for a trial that was sent out, even
    # after it was re-queued or given up on: a real measurement is never thrown away
    K.TRIAL_COMPLETED: Kind(
        TrialCompleted,
        _p_completed,
        _d_completed,
        fold=_v_completed,
        allowed_from=frozenset({lc.RUNNING, lc.IN_DOUBT, lc.PROPOSED, lc.FAILED, lc.ABANDONED}),
    ),
    K.TRIAL_AMENDED: Kind(  # an operator's correction, kept in the log
        TrialAmended,
        _p_amended,
        lambda p: (
            f"amended by {p.get('operator')} ({p.get('reason')}): "
            f"{_outcomes(p['previous'])} -> {_outcomes(p['outcomes'])}"
        ),
        fold=_v_outcomes,
        allowed_from=frozenset({lc.COMPLETED}),
    ),
    K.TRIAL_FAILED: Kind(
        TrialSettled,
        _p_settled,
        lambda p: f"failed: {p['reason']} -> {p['status']}",
        fold=_v_settled,
        allowed_from=_RUNNING,
    ),
    K.TRIAL_INTERRUPTED: Kind(
        TrialSettled,
        _p_settled,
        lambda p: f"interrupted: {p['reason']} -> {p['status']}",
        fold=_v_settled,
        allowed_from=_RUNNING,
    ),
    K.TRIAL_ABANDONED: Kind(
        TrialSettled,
        _p_settled,
        lambda p: f"abandoned: {p['reason']}",
        fold=_v_settled,
        allowed_from=frozenset({lc.PROPOSED, lc.APPROVED, lc.RUNNING, lc.IN_DOUBT}),
    ),
    K.TRIAL_RELEASED: Kind(  # put back unmeasured by its driver
        TrialSettled,
        _p_released,
        lambda p: f"put back unmeasured by {p['driver']}: {p['reason']}",
        fold=_v_released,
        allowed_from=_RUNNING,
    ),
    K.TRIAL_IN_DOUBT: Kind(
        TrialInDoubt,
        _p_in_doubt,
        lambda p: f"in doubt: {p['reason']}",
        fold=_v_to(lc.IN_DOUBT),
        allowed_from=frozenset({lc.RUNNING}),
    ),
    K.TRIAL_RECLAIMED: Kind(  # its driver came back still holding it
        TrialReclaimed,
        _p_in_doubt,
        lambda p: f"running again: {p['reason']}",
        fold=_v_to(lc.RUNNING),
        allowed_from=frozenset({lc.IN_DOUBT}),
    ),
    K.TRIAL_APPROVED: Kind(
        OperatorDecision,
        _p_operator,
        lambda p: f"approved by {p['operator']}",
        fold=_v_to(lc.APPROVED),
        allowed_from=frozenset({lc.PROPOSED}),
    ),
    K.TRIAL_REJECTED: Kind(
        OperatorDecision,
        _p_operator,
        lambda p: f"rejected by {p['operator']}: {p.get('reason')}",
        fold=_v_to(lc.REJECTED),
        allowed_from=_QUEUED,
    ),
    K.CAMPAIGN_PAUSED: Kind(
        PauseChange, _p_pause, lambda p: f"dispatching paused by {p['operator']}"
    ),
    K.CAMPAIGN_UNPAUSED: Kind(
        PauseChange, _p_pause, lambda p: f"dispatching resumed by {p['operator']}"
    ),
    K.DRIVER_CONNECTED: Kind(DriverConnected, _p_driver, _d_connected),
    K.DRIVER_LOST: Kind(
        DriverGone, _p_driver, lambda p: f"driver {p['name']} lost: {p.get('reason')}"
    ),
    K.DRIVER_LEFT: Kind(
        DriverGone, _p_driver, lambda p: f"driver {p['name']} left: {p.get('reason')}"
    ),
    K.PROPOSAL_FAILED: Kind(
        Failure,
        _p_error,
        lambda p: (
            f"proposal failed ({p.get('failures')} in a row): {p.get('error')} -> {p.get('action')}"
        ),
    ),
    K.CONTROLLER_ERROR: Kind(
        Failure, _p_error, lambda p: f"controller error in {p.get('stage')}: {p.get('error')}"
    ),
}
assert set(CATALOGUE) == set(EventKind), "every event kind needs its entry"


# ---------------------------------------------------------------------- using it


# by the kind's string (an EventKind, a StrEnum, finds its entry too): a dict look-up
# instead of an enum construction, for every event appended, projected and folded
_BY_NAME: dict[str, Kind] = {k.value: entry for k, entry in CATALOGUE.items()}


def kind_of(kind: str) -> Kind:
    """The catalogue entry of a kind; an unknown kind is an error, never skipped."""
    entry = _BY_NAME.get(kind) if isinstance(kind, str) else None
    if entry is None:
        raise PayloadError(f"unknown event kind {kind!r}")
    return entry


_ABSENT = object()


def check_payload(kind: str, payload: Mapping[str, Any], *, writing: bool = False) -> Kind:
    """Refuse a payload that does not fit its kind: a missing field, a value of the wrong
    type, or (when ``writing``) a field the kind does not have."""
    entry = kind_of(kind)
    if not isinstance(payload, Mapping):
        raise PayloadError(f"{kind}: payload must be an object, got {type(payload).__name__}")
    for name, required, ok in entry.schema.fields:
        v = payload.get(name, _ABSENT)
        if v is _ABSENT:
            if required:
                raise PayloadError(f"{kind}: field {name!r} is missing")
        elif not ok(v) and not (v is None and not required):
            raise PayloadError(f"{kind}: field {name!r} has the wrong type ({v!r:.60})")
    if writing:
        extra = set(payload) - entry.schema.names
        if extra:
            raise PayloadError(f"{kind}: unknown field(s) {', '.join(sorted(extra))}")
    return entry


def parse(kind: str, payload: Mapping[str, Any]) -> Any:
    """The payload as its kind's dataclass, once checked (keys it does not name dropped)."""
    entry = check_payload(kind, payload)
    names = entry.schema.names
    return entry.payload(**{k: v for k, v in payload.items() if k in names})


def project(conn: sqlite3.Connection, ev: Event, checked: Kind | None = None) -> None:
    """Apply one event to the derived tables. Pure fold: no checks of the lifecycle, no
    clock, no I/O else; a payload that does not fit its kind raises :class:`PayloadError`.
    ``checked``: the entry :func:`check_payload` returned for this very payload (the store
    has just checked what it appends), so that it is not checked twice."""
    entry = checked
    if entry is None:
        try:
            entry = check_payload(ev.kind, ev.payload)
        except PayloadError as exc:
            raise PayloadError(f"event {ev.seq}: {exc}") from None
    entry.project(conn, ev)


def fold(seen: Seen, ev: Event) -> None:
    """Apply one event to what strategies see."""
    try:
        entry = check_payload(ev.kind, ev.payload)
    except PayloadError as exc:
        raise PayloadError(f"event {ev.seq}: {exc}") from None
    if entry.fold is not None:
        entry.fold(seen, ev.trial_id, ev.payload)


def describe(kind: str, payload: Mapping[str, Any]) -> str:
    """One event in words, for the audit's timeline."""
    entry = check_payload(kind, payload)
    return entry.describe(payload)


def check_transition(kind: str, trial_id: str, status: str) -> None:
    """May an event of this kind be applied to a trial that is ``status``?"""
    allowed = kind_of(kind).allowed_from
    if allowed is None:
        raise TrialError("bad_state", f"{kind} is not a step of a trial's lifecycle")
    if status not in allowed:
        verb = kind.removeprefix("trial_")
        raise TrialError(
            "bad_state",
            f"trial {trial_id} is {status}; it cannot be {verb} "
            f"(allowed from {', '.join(sorted(allowed))})",
        )


def transitions() -> dict[str, frozenset[str]]:
    """event kind -> the trial statuses it may be applied to (the lifecycle's table)."""
    return {k.value: e.allowed_from for k, e in CATALOGUE.items() if e.allowed_from is not None}
