"""Domain operations on a campaign database, shared by the controller and the Python API.

Each function checks its input against the spec and the trial lifecycle, then
records events in the caller's batch. Nothing here knows about sockets or
models, which is why ask/tell and the controller write the same database.
"""

from __future__ import annotations

import dataclasses
import json
from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from loopctl import costs, events, lifecycle
from loopctl.canonical import canonical
from loopctl.errors import TrialError, ValidationError
from loopctl.events import Event
from loopctl.pareto import non_dominated
from loopctl.spec import Spec
from loopctl.store import Batch, Store
from loopctl.strategies.base import CampaignData, Observation, Proposal
from loopctl.values import finite_number

if TYPE_CHECKING:  # callers pass a Space; importing it here would load numpy for `status`
    from loopctl.space import Space


def trial_id(number: int) -> str:
    return f"T{number:04d}"


# ---------------------------------------------------------------------- outcomes


def validate_outcomes(
    spec: Spec, outcomes: Any, where: str = "outcomes"
) -> dict[str, dict[str, Any]]:
    """Normalise outcomes to ``{objective: {"value": v, "sem": s | None}}``.

    Accepts a number, a ``(mean, sem)`` pair or a ``{"value", "sem"}`` mapping
    per objective; every objective must be present and finite.
    """
    if not isinstance(outcomes, Mapping):
        raise ValidationError(f"{where}: must be a mapping of objective names to values")
    names = spec.metric_names  # objectives and constrained outcomes
    unknown = [k for k in outcomes if k not in names]
    if unknown:
        raise ValidationError(
            f"{where}: unknown outcome {unknown[0]!r}; the campaign measures {', '.join(names)}"
        )
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        if name not in outcomes:
            raise ValidationError(f"{where}.{name}: missing")
        out[name] = _outcome(outcomes[name], f"{where}.{name}")
    return out


def _outcome(v: Any, where: str) -> dict[str, Any]:
    sem: Any = None
    if isinstance(v, Mapping):
        extra = set(v) - {"value", "sem"}
        if extra or "value" not in v:
            raise ValidationError(f"{where}: expected {{value, sem}}, got keys {sorted(v)}")
        value, sem = v["value"], v.get("sem")
    elif isinstance(v, (tuple, list)):
        if len(v) != 2:
            raise ValidationError(f"{where}: expected (mean, sem), got {len(v)} items")
        value, sem = v
    else:
        value = v
    out = {"value": finite_number(value, where), "sem": None}
    if sem is not None:
        s = finite_number(sem, f"{where}.sem")
        if s < 0:
            raise ValidationError(f"{where}.sem: must not be negative, got {s:g}")
        out["sem"] = s
    return out


# ---------------------------------------------------------------------- recording


def record_proposal(
    b: Batch,
    proposal: Proposal,
    data_seq: int,
    origin: str = "strategy",
    replaces: Sequence[str] = (),
) -> list[str]:
    """``data_seq``: the last event of the data the strategy saw, so audits can replay it;
    ``replaces``: the ready candidates left out of its pending points, because this
    proposal was made to replace them (withdrawn by :func:`record_withdrawal`)."""
    store = b.store
    pnum = store.next_number("proposals")
    tnum = store.next_number("trials")
    ids = [trial_id(tnum + i) for i in range(len(proposal.candidates))]
    pid = f"P{pnum:04d}"
    candidates = [
        {"trial_id": tid, "predicted": c.predicted, "acquisition": c.acquisition}
        for tid, c in zip(ids, proposal.candidates, strict=True)
    ]
    b.add(
        "proposal_made",
        None,
        {
            "id": pid,
            "number": pnum,
            "strategy": proposal.strategy,
            "version": proposal.version,
            "seed": proposal.seed,
            "trial_ids": ids,
            "sobol_drawn": proposal.sobol_drawn,
            "data_seq": data_seq,
            "diagnostics": dict(proposal.diagnostics, candidates=candidates),
            **({"replaces": list(replaces)} if replaces else {}),  # only when set
        },
    )
    for i, (tid, c) in enumerate(zip(ids, proposal.candidates, strict=True)):
        payload = {"number": tnum + i, "origin": origin, "proposal_id": pid}
        if c.fidelity is not None:  # written only when set: other campaigns' logs unchanged
            payload["fidelity"] = c.fidelity
        b.add("trial_proposed", tid, {**payload, "parameters": c.parameters})
    return ids


def record_dispatch(
    b: Batch, tid: str, driver: str, deadline: float | None, row: dict[str, Any] | None = None
) -> int:
    """``row``: the trial as the caller has just read it in this batch (else read here)."""
    t = row if row is not None else _trial(b.store, tid)
    lifecycle.check("trial_dispatched", tid, t["status"])
    attempt = t["attempts"] + 1
    b.add("trial_dispatched", tid, {"driver": driver, "attempt": attempt, "deadline": deadline})
    return attempt


def record_result(
    b: Batch,
    spec: Spec,
    tid: str,
    outcomes: Any,
    driver: str,
    metadata: Mapping[str, Any] | None = None,
    cost: float | None = None,
    row: dict[str, Any] | None = None,
) -> bool:
    """Record a result; False (and nothing written) when the trial already has one.
    ``cost``: what the driver measured the trial cost (campaigns with fidelities);
    ``row``: the trial as the caller has just read it in this batch (else read here)."""
    t = row if row is not None else _trial(b.store, tid)
    if t["status"] == lifecycle.COMPLETED:
        return False
    if t["attempts"] == 0:
        raise TrialError(
            "not_dispatched", f"trial {tid} was never sent out; it cannot have a result"
        )
    lifecycle.check("trial_completed", tid, t["status"])
    clean = validate_outcomes(spec, outcomes)
    payload: dict[str, Any] = {
        "outcomes": clean,
        "driver": driver,
        "attempt": t["attempts"],
        "metadata": dict(metadata or {}),
    }
    if cost is not None:
        payload["cost"] = finite_number(cost, f"trial {tid}: cost")
    b.add("trial_completed", tid, payload)
    return True


def check_retold(store: Store, spec: Spec, tid: str, outcomes: Any) -> None:
    """`tell` on a trial that has its result: the same values again are a harmless retry;
    anything else is refused, pointing at the audited way to correct a result."""
    recorded = _recorded(store, tid)
    if validate_outcomes(spec, outcomes) != recorded:
        raise TrialError(
            "already_completed",
            f"trial {tid} already has a result ({_describe(recorded)}); a "
            "result is not overwritten: correct it with Campaign.amend(...) or "
            "`loopctl amend DB TRIAL --set NAME=VALUE --reason ...` (kept in the log)",
        )


def _recorded(store: Store, tid: str) -> dict[str, dict[str, Any]]:
    rows = store.conn.execute(
        "SELECT metric, value, sem FROM observations WHERE trial_id = ?", (tid,)
    ).fetchall()
    return {m: {"value": v, "sem": s} for m, v, s in rows}


def _describe(outcomes: Mapping[str, Mapping[str, Any]]) -> str:
    return ", ".join(f"{m}={o['value']:.6g}" for m, o in outcomes.items())


def record_amendment(
    b: Batch, spec: Spec, tid: str, changes: Mapping[str, Any], reason: str, operator: str
) -> str:
    """An operator corrects a recorded result: the new values replace the old for every
    reader (strategies included) and both stay in the log, with who, when and why."""
    t = _trial(b.store, tid)
    lifecycle.check("trial_amended", tid, t["status"])
    if not reason.strip():
        raise ValidationError(f"amend {tid}: give a reason (it is kept with the correction)")
    previous = _recorded(b.store, tid)
    merged: dict[str, Any] = {m: dict(o) for m, o in previous.items()}
    merged.update(changes)
    clean = validate_outcomes(spec, merged, f"amend {tid}")
    if clean == previous:
        raise ValidationError(f"amend {tid}: nothing changes ({_describe(previous)})")
    b.add(
        "trial_amended",
        tid,
        {"outcomes": clean, "previous": previous, "reason": reason, "operator": operator},
    )
    return f"amended {tid}: {_describe(previous)} -> {_describe(clean)}"


def record_failure(
    b: Batch, tid: str, reason: str, retryable: bool, driver: str | None, retries: int
) -> str:
    """A driver says the trial failed; retryable failures go back to the queue if allowed."""
    t = _trial(b.store, tid)
    if t["status"] in lifecycle.TERMINAL:
        return t["status"]  # repeated FAILED: idempotent
    lifecycle.check("trial_failed", tid, t["status"])
    requeue = retryable and t["attempts"] <= retries
    status = lifecycle.PROPOSED if requeue else lifecycle.FAILED
    b.add(
        "trial_failed",
        tid,
        {
            "reason": reason,
            "retryable": retryable,
            "driver": driver,
            "attempt": t["attempts"],
            "status": status,
        },
    )
    return status


def record_release(b: Batch, tid: str, reason: str, driver: str) -> None:
    """The driver hands the trial back unmeasured (a person will do it later, or is
    leaving): back to the queue, and the attempt does not count against the retries."""
    t = _trial(b.store, tid)
    lifecycle.check("trial_released", tid, t["status"])
    b.add(
        "trial_released",
        tid,
        {"reason": reason, "driver": driver, "attempt": t["attempts"], "status": "proposed"},
    )


def record_interrupt(b: Batch, tid: str, reason: str, retries: int) -> str:
    """The driver vanished or the trial timed out: re-queue within the retry limit."""
    t = _trial(b.store, tid)
    lifecycle.check("trial_interrupted", tid, t["status"])
    status = lifecycle.PROPOSED if t["attempts"] <= retries else lifecycle.ABANDONED
    b.add(
        "trial_interrupted",
        tid,
        {"reason": reason, "driver": t["driver"], "attempt": t["attempts"], "status": status},
    )
    return status


def record_in_doubt(b: Batch, tid: str, grace_until: float) -> None:
    """A restarted controller cannot know if a running trial's driver still works on it."""
    t = _trial(b.store, tid)
    lifecycle.check("trial_in_doubt", tid, t["status"])
    b.add(
        "trial_in_doubt",
        tid,
        {
            "reason": "controller restarted while it was running",
            "driver": t["driver"],
            "deadline": grace_until,
            "run_deadline": t["deadline"],
        },
    )


def record_reclaim(b: Batch, tid: str, driver: str) -> None:
    """The trial's driver reconnected and still holds it: it is running again."""
    t = _trial(b.store, tid)
    lifecycle.check("trial_reclaimed", tid, t["status"])
    run_deadline = next(
        (
            e.payload.get("run_deadline")
            for e in b.store.trial_events(tid)
            if e.kind == "trial_in_doubt"
        ),
        None,
    )
    b.add(
        "trial_reclaimed",
        tid,
        {"reason": f"driver {driver} still holds it", "driver": driver, "deadline": run_deadline},
    )


def record_approval(b: Batch, tid: str, approve: bool, operator: str, reason: str = "") -> None:
    """An operator's decision; a rejected candidate is never run nor proposed again."""
    t = _trial(b.store, tid)
    kind = "trial_approved" if approve else "trial_rejected"
    lifecycle.check(kind, tid, t["status"])
    b.add(kind, tid, {"operator": operator, "reason": reason or None})


def record_suggestion(
    b: Batch, spec: Spec, space: Space, values: Mapping[str, Any], operator: str
) -> str:
    """A scientist's own candidate, checked like any other, approved by being suggested."""
    params = space.validate(values, "suggestion")
    tid = trial_id(b.store.next_number("trials"))
    number = b.store.next_number("trials")
    b.add(
        "trial_proposed",
        tid,
        {"number": number, "origin": "suggested", "parameters": params, "operator": operator},
    )
    if spec.execution.approval == "manual":
        b.add("trial_approved", tid, {"operator": operator, "reason": "suggested"})
    return tid


def record_pause(b: Batch, paused: bool, operator: str) -> None:
    b.add("campaign_paused" if paused else "campaign_unpaused", None, {"operator": operator})


def dispatchable(store: Store, spec: Spec) -> list[dict[str, Any]]:
    """Trials ready to go out: with manual approval, those approved (or approved before
    and re-queued after a failure); otherwise every queued one. Oldest first."""
    queued = store.trials(lifecycle.PROPOSED, lifecycle.APPROVED)
    if spec.execution.approval == "manual":
        return [t for t in queued if t["status"] == lifecycle.APPROVED or t["attempts"] > 0]
    return queued


def record_withdrawal(b: Batch, tid: str, news: int, refresh_after: int, by: str) -> bool:
    """Withdraw a ready candidate that proposal ``by`` replaced, if it is still waiting for
    its first dispatch (False, and nothing written, if a driver took it meanwhile). It is
    abandoned, the terminal status of a trial that never ran for reasons not its own:
    strategies stop seeing it as pending and the budget stops counting it."""
    t = _trial(b.store, tid)
    if t["status"] != lifecycle.PROPOSED or t["attempts"]:
        return False
    reason = (
        f"withdrawn: a ready candidate {news} results old (execution.refresh_after "
        f"{refresh_after}); replaced by proposal {by}"
    )
    record_abandon(b, tid, reason)
    return True


def record_abandon(b: Batch, tid: str, reason: str) -> None:
    t = _trial(b.store, tid)
    lifecycle.check("trial_abandoned", tid, t["status"])
    b.add("trial_abandoned", tid, {"reason": reason, "status": lifecycle.ABANDONED})


def record_imports(
    b: Batch,
    spec: Spec,
    space: Space,
    rows: Iterable[Mapping[str, Any]],
    source: str,
    force: bool = False,
) -> list[str]:
    """Past measurements enter as completed trials with origin ``imported``.

    All rows are validated before anything is written, so a bad row 37 leaves
    the campaign as it was rather than half-imported. Rows already imported (the same
    parameters and outcomes) are refused unless ``force``: the same file imported twice
    would count every measurement twice.
    """
    clean: list[tuple[dict[str, Any], dict[str, dict[str, Any]], dict[str, Any]]] = []
    objective_names = set(spec.metric_names)
    known = space.column_names() | objective_names | {f"{k}_sem" for k in objective_names}
    for i, row in enumerate(rows):
        where = f"{source} row {i + 2}"  # +1 header, +1 one-based, as a spreadsheet shows it
        params_in = space.unflat({k: v for k, v in row.items() if k not in objective_names}, where)
        params = space.validate(params_in, where)
        outs_in = {k: _number_cell(row.get(k), f"{where}.{k}") for k in objective_names}
        sems = {k: row.get(f"{k}_sem") for k in objective_names}
        outcomes = validate_outcomes(
            spec,
            {
                k: (v, _number_cell(sems[k], f"{where}.{k}_sem"))
                if sems[k] not in (None, "")
                else v
                for k, v in outs_in.items()
            },
            where,
        )
        extra = {k: v for k, v in row.items() if k not in known and v not in (None, "")}
        clean.append((params, outcomes, extra))
    if not force:
        _refuse_reimport(b.store, clean, source)
    tnum = b.store.next_number("trials")
    ids = []
    for i, (params, outcomes, extra) in enumerate(clean):
        tid = trial_id(tnum + i)
        # columns that are neither parameters nor objectives (operator, notes, batch...)
        # are kept with the trial rather than dropped
        b.add(
            "trial_imported",
            tid,
            {
                "number": tnum + i,
                "origin": "imported",
                "parameters": params,
                "outcomes": outcomes,
                "source": source,
                "metadata": extra,
            },
        )
        ids.append(tid)
    return ids


def _refuse_reimport(store: Store, clean: list[Any], source: str) -> None:
    seen: dict[str, str] = {}
    for tid, payload in store.conn.execute(
        "SELECT trial_id, payload FROM events WHERE kind = 'trial_imported'"
    ):
        p = json.loads(payload)
        seen[canonical([p["parameters"], p["outcomes"]])] = tid
    again = [
        (i + 2, seen[key])
        for i, (params, outcomes, _) in enumerate(clean)
        if (key := canonical([params, outcomes])) in seen
    ]
    if again:
        shown = ", ".join(f"row {row} (as {tid})" for row, tid in again[:5])
        more = f" and {len(again) - 5} more" if len(again) > 5 else ""
        raise ValidationError(
            f"{source}: {len(again)} of {len(clean)} rows were imported before: {shown}{more}; "
            "nothing imported (pass --force to import them again)"
        )


def _number_cell(v: Any, where: str) -> Any:
    if v is None or (isinstance(v, str) and not v.strip()):
        raise ValidationError(f"{where}: missing")
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            raise ValidationError(f"{where}: {v!r} is not a number") from None
    return v


def _trial(store: Store, tid: Any) -> dict[str, Any]:
    t = store.trial(tid) if isinstance(tid, str) else None
    if t is None:
        raise TrialError("unknown_trial", f"no trial {tid!r} in this campaign")
    return t


# ---------------------------------------------------------------------- reading


class _Ordered:
    """Items of some trials, in the order the trials were proposed (their position, a key
    that only grows), as strategies are shown them. A change is a binary search and one
    list insert or delete (a memmove in C, not a Python loop), and the tuple handed out is
    rebuilt only after a change: a batch costs the same at 10,000 trials as at 10."""

    __slots__ = ("_frozen", "items", "keys")

    def __init__(self) -> None:
        self.keys: list[int] = []
        self.items: list[Any] = []
        self._frozen: tuple[Any, ...] | None = ()

    def put(self, key: int, item: Any) -> None:
        i = bisect_left(self.keys, key)
        if i < len(self.keys) and self.keys[i] == key:
            self.items[i] = item
        else:
            self.keys.insert(i, key)
            self.items.insert(i, item)
        self._frozen = None

    def drop(self, key: int) -> None:
        i = bisect_left(self.keys, key)
        if i < len(self.keys) and self.keys[i] == key:
            del self.keys[i], self.items[i]
            self._frozen = None

    def frozen(self) -> tuple[Any, ...]:
        if self._frozen is None:
            self._frozen = tuple(self.items)
        return self._frozen


_OUTCOME_KINDS = frozenset({"trial_completed", "trial_amended", "trial_imported"})


class DataView:
    """What strategies see, kept as an in-memory fold of the event log.

    A fresh view starts from the derived tables (``trials``, ``observations``,
    ``proposals``) as of their last event, which hold the same facts as the fold of
    every event before it (they are written in the same transaction) at a fraction of
    the cost: resuming a campaign of 100,000 imported trials no longer reads and folds
    every event. From there each refresh folds only the events appended since, so
    asking for a proposal costs O(new events), not O(campaign). If the log under the
    view changed (a rolled-back batch), the view notices by the hash of the last event
    it read and starts again. A view asked for a past moment (``until``, to replay a
    proposal) folds the log from its start, since the tables only know the present.

    The same fold keeps what the controller asks after every batch: the counts of the
    campaign's own trials by status (:func:`run_counts`) and the best trial (:func:`best`).
    Each event moves one trial between the lists strategies are shown (kept in proposal
    order by :class:`_Ordered`), so neither the log nor the trials table is read again,
    and no trial's record is rebuilt, as the campaign grows.
    """

    def __init__(self, store: Store, spec: Spec, space: Space) -> None:
        self.store, self.spec, self.space = store, spec, space
        self.reset()

    def reset(self) -> None:
        self.seq, self.last_hash = 0, ""
        self.seen = events.Seen()
        self._pos: dict[str, int] = {}  # trial -> its place in proposal order
        self._imported: set[str] = set()  # not counted by run_counts: they cost nothing
        self._counts: dict[str, int] = {}
        self._lists = {
            lifecycle.COMPLETED: _Ordered(),
            lifecycle.FAILED: _Ordered(),
            lifecycle.REJECTED: _Ordered(),
            **dict.fromkeys(lifecycle.OPEN, _Ordered()),  # one list: pending
        }
        self._pending_fidelity = _Ordered()  # with fidelities: each pending trial's level
        self._best: tuple[tuple[float, int], str] | None = None  # (sort key, trial)
        self._best_stale = False  # an amendment may have made the best worse: look again

    def refresh(self, until: int | None = None, excluding: Iterable[str] = ()) -> CampaignData:
        """The data as of now, or as of event ``until`` (for replaying a past proposal).

        ``excluding``: open trials not to show as pending: ready candidates that the
        proposal asked for now is to replace (see ``ProposalMade.replaces``)."""
        self._catch_up(until)
        data = self._data()
        drop = {self._pos[t] for t in excluding if t in self._pos}
        if not drop:
            return data
        pending = self._lists[lifecycle.PROPOSED]
        keep = [i for i, key in enumerate(pending.keys) if key not in drop]
        fidelity = data.pending_fidelity
        if self.spec.fidelities is not None:
            levels = dict(zip(self._pending_fidelity.keys, fidelity, strict=True))
            fidelity = tuple(levels[pending.keys[i]] for i in keep)
        return dataclasses.replace(
            data, pending=tuple(pending.items[i] for i in keep), pending_fidelity=fidelity
        )

    def run_counts(self) -> dict[str, int]:
        """What :func:`run_counts` reads from the trials table, as of now, from the fold."""
        self._catch_up()
        return {s: n for s, n in self._counts.items() if n}

    def best(self) -> dict[str, Any] | None:
        """What :func:`best` finds by sorting the observations, as of now, from the fold."""
        self._catch_up()
        if self._best_stale:
            self._best, self._best_stale = None, False
            for obs in self._lists[lifecycle.COMPLETED].items:
                self._consider(obs.trial_id, obs.outcomes)
        if self._best is None:
            return None
        tid = self._best[1]
        value = self.seen.outcomes[tid][self.spec.objectives[0].name][0]
        return _best_entry(self.store, self.spec, tid, value)

    def _catch_up(self, until: int | None = None) -> None:
        # a writer's own events since the view's last, as it appended them: no read of the
        # log (the controller's view, after every batch); else from the database
        news: Iterable[Event] | None = None
        if self.seq:
            news = self.store.appended(self.seq, self.last_hash)
            if news is None:
                row = self.store.conn.execute(
                    "SELECT hash FROM events WHERE seq = ?", (self.seq,)
                ).fetchone()
                if row is None or row[0] != self.last_hash:
                    self.reset()
        if not self.seq and until is None:
            self._load_tables()
            news = None
        for ev in news if news is not None else self.store.events(since=self.seq):
            if until is not None and ev.seq > until:
                break
            self._fold(ev)
            self.seq, self.last_hash = ev.seq, ev.hash

    def _fold(self, ev: Event) -> None:
        tid, seen = ev.trial_id, self.seen
        before = seen.status.get(tid) if tid is not None else None
        events.fold(seen, ev)
        if tid is None:
            return
        after = seen.status.get(tid)
        if before is None:
            if after is None:
                return
            if ev.payload.get("origin") == "imported":
                self._imported.add(tid)
            self._pos[tid] = len(self._pos)
        if after != before or ev.kind in _OUTCOME_KINDS:
            self._move(tid, before, after, ev.kind == "trial_amended")

    def _move(self, tid: str, before: str | None, after: Any, amended: bool = False) -> None:
        """Account for one trial going from status ``before`` to ``after``."""
        if tid not in self._imported:
            if before is not None:
                self._counts[before] -= 1
            self._counts[after] = self._counts.get(after, 0) + 1
        pos, lists = self._pos[tid], self._lists
        old = lists.get(before) if before is not None else None
        new = lists.get(after)
        if old is not None and old is not new:
            old.drop(pos)
        if self.spec.fidelities is not None:
            if after in lifecycle.OPEN:
                self._pending_fidelity.put(pos, self.seen.fidelity.get(tid))
            elif before in lifecycle.OPEN:
                self._pending_fidelity.drop(pos)
        if after == lifecycle.COMPLETED:
            outcomes = self.seen.outcomes[tid]
            level = self.seen.fidelity.get(tid)
            new.put(pos, Observation(tid, self.seen.params[tid], outcomes, level))  # type: ignore[union-attr]
            if amended or before == lifecycle.COMPLETED:
                self._best_stale = True  # the best may now be worse: found again when asked
            else:
                self._consider(tid, outcomes)
        elif new is not None and new is not old:
            new.put(pos, self.seen.params[tid])

    def _consider(self, tid: str, outcomes: Mapping[str, tuple[float, float | None]]) -> None:
        """The best on the first objective among completed trials meeting every outcome
        constraint (with fidelities, measured at the target level); the earliest proposed
        wins a tie, as :func:`best` orders them."""
        obj, fid = self.spec.objectives[0], self.spec.fidelities
        if obj.name not in outcomes:
            return
        if fid is not None and self.seen.fidelity.get(tid, fid.target) != fid.target:
            return  # a cheap level's value is not the campaign's answer
        if self.spec.outcome_constraints and not self.spec.feasible(
            {m: v[0] for m, v in outcomes.items()}
        ):
            return
        key = (-obj.sign * outcomes[obj.name][0], self._pos[tid])
        if self._best is None or key < self._best[0]:
            self._best = (key, tid)

    def _load_tables(self) -> None:
        """Start from the derived tables, read at one moment with the event they reflect."""
        conn, seen = self.store.conn, events.Seen()
        imported: set[str] = set()
        with self.store.snapshot():
            head = conn.execute("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1")
            row = head.fetchone()
            if row is None:
                return
            rows = conn.execute(
                "SELECT id, status, origin, parameters, attempts FROM trials ORDER BY number"
            ).fetchall()
            # one parse of all the parameters as a single JSON array: a third of the time of
            # one parse per trial, and the parameter names are then shared by every trial
            params = json.loads("[" + ",".join(r[3] for r in rows) + "]")
            for (tid, status, origin, _, attempts), values in zip(rows, params, strict=True):
                seen.params[tid] = values
                seen.status[tid] = status
                if origin == "imported":
                    imported.add(tid)
                if attempts:
                    seen.attempts[tid] = attempts
            del rows, params
            ids = {tid: tid for tid in seen.status}  # one string per trial id, not two
            for tid, metric, value, sem in conn.execute(
                "SELECT trial_id, metric, value, sem FROM observations ORDER BY trial_id, metric"
            ):
                seen.outcomes.setdefault(ids.get(tid, tid), {})[metric] = (value, sem)
            count, drawn = conn.execute(
                "SELECT COUNT(*), COALESCE(SUM(sobol_drawn), 0) FROM proposals"
            ).fetchone()
            if self.spec.fidelities is not None:  # not in the tables: from the log
                for tid, cost in costs.from_store(conn, self.spec.fidelities).items():
                    if cost.fidelity is not None:
                        seen.fidelity[tid] = cost.fidelity
                    if cost.measured is not None:
                        seen.measured[tid] = cost.measured
        seen.proposals, seen.sobol_drawn = int(count), int(drawn)
        self.seen, self.seq, self.last_hash = seen, int(row[0]), str(row[1])
        self._imported = imported
        for tid, status in seen.status.items():
            self._pos[tid] = len(self._pos)
            self._move(tid, None, status)

    def _data(self) -> CampaignData:
        lists, fid, cost_left = self._lists, self.spec.fidelities, None
        if fid is not None and self.spec.budget.cost is not None:
            # O(trials), in campaigns with a cost budget only
            cost_left = costs.room(fid, self.spec.budget.cost, self._trial_costs())
        return CampaignData(
            spec=self.spec,
            space=self.space,
            completed=lists[lifecycle.COMPLETED].frozen(),
            failed=lists[lifecycle.FAILED].frozen(),
            pending=lists[lifecycle.PROPOSED].frozen(),
            proposal_index=self.seen.proposals,
            sobol_drawn=self.seen.sobol_drawn,
            as_of=self.seq,
            rejected=lists[lifecycle.REJECTED].frozen(),
            pending_fidelity=self._pending_fidelity.frozen() if fid is not None else (),
            cost_left=cost_left,
        )

    def trial_costs(self) -> dict[str, costs.TrialCost]:
        """Each trial's cost facts as of now, from the fold: what :func:`costs.from_store`
        reads by parsing the whole log, which the controller asked for every dispatch."""
        self._catch_up()
        return self._trial_costs()

    def _trial_costs(self) -> dict[str, costs.TrialCost]:
        seen = self.seen
        return {
            tid: costs.TrialCost(
                seen.fidelity.get(tid),
                seen.attempts.get(tid, 0),
                status,
                seen.measured.get(tid),
            )
            for tid, status in seen.status.items()
        }


def snapshot(store: Store, spec: Spec, space: Space) -> CampaignData:
    """A one-off view (tests, tools); long-lived callers keep a :class:`DataView`."""
    return DataView(store, spec, space).refresh()


def best(store: Store, spec: Spec) -> dict[str, Any] | None:
    """Best completed trial on the first objective (observed value, not a model guess)
    among those meeting every outcome constraint; with fidelities, among those measured
    at the target level (a cheap level's value is not the campaign's answer)."""
    obj = spec.objectives[0]
    order = "DESC" if obj.goal == "maximize" else "ASC"
    rows: Iterable[Any] = store.conn.execute(
        f"SELECT o.trial_id, o.value FROM observations o JOIN trials t ON t.id = o.trial_id "
        f"WHERE o.metric = ? AND t.status = 'completed' ORDER BY o.value {order}, t.number",
        (obj.name,),
    )
    if spec.outcome_constraints:
        obs = store.observations()
        rows = (r for r in rows if spec.feasible({m: v[0] for m, v in obs[r[0]].items()}))
    if spec.fidelities is not None:
        fid = spec.fidelities
        level = {t: c.fidelity or fid.target for t, c in costs.from_store(store.conn, fid).items()}
        rows = (r for r in rows if level.get(r[0]) == fid.target)
    row = next(iter(rows), None)
    if row is None:
        return None
    return _best_entry(store, spec, row[0], row[1])


def _best_entry(store: Store, spec: Spec, tid: str, value: float) -> dict[str, Any]:
    t = store.trial(tid)
    assert t is not None
    return {
        "trial_id": tid,
        "objective": spec.objectives[0].name,
        "value": value,
        "parameters": t["parameters"],
        "origin": t["origin"],
        "metadata": result_metadata(store, tid),
    }


def result_metadata(store: Store, trial_id: str) -> dict[str, Any]:
    """What came with the trial's result besides the outcomes: who entered it, notes, or what
    a simulation actually computed (the EMT oracle's cell holds compositions in steps)."""
    for ev in store.trial_events(trial_id):  # newest first
        if ev.kind in ("trial_completed", "trial_imported"):
            return dict(ev.payload.get("metadata") or {})
    return {}


def pareto(store: Store, spec: Spec) -> list[dict[str, Any]]:
    """The completed trials (meeting every outcome constraint) that no other beats on every
    objective at once, with all their objectives, best first on the first objective."""
    completed = {
        r[0] for r in store.conn.execute("SELECT id FROM trials WHERE status = 'completed'")
    }
    done = {
        t: v
        for t, v in store.observations().items()
        if t in completed
        and all(o.name in v for o in spec.objectives)
        and (not spec.outcome_constraints or spec.feasible({m: x[0] for m, x in v.items()}))
    }
    if not done:
        return []
    ids = sorted(done)
    minimise = [tuple(-o.sign * done[t][o.name][0] for o in spec.objectives) for t in ids]
    front = []
    for i in non_dominated(minimise):
        t = store.trial(ids[i])
        assert t is not None
        front.append(
            {
                "trial_id": ids[i],
                "outcomes": {o.name: done[ids[i]][o.name][0] for o in spec.objectives},
                "parameters": t["parameters"],
                "origin": t["origin"],
            }
        )
    first = spec.objectives[0]
    return sorted(front, key=lambda p: -first.sign * p["outcomes"][first.name])


def run_counts(store: Store) -> dict[str, int]:
    """Counts of this campaign's own trials by status (imports excluded: they cost nothing)."""
    return {
        s: n
        for s, n in store.conn.execute(
            "SELECT status, COUNT(*) FROM trials WHERE origin != 'imported' GROUP BY status"
        )
    }
