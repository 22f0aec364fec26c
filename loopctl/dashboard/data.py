"""What the dashboard shows, read from the campaign database through read-only connections.

Every function opens the database read-only for one request (a writer's lock is never
taken, so it works beside a running controller) and returns plain JSON-ready data. The
per-trial and per-page queries are indexed lookups; the whole-campaign series are one
scan of the trials and observations tables, columnar to keep a 10,000-trial page small.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from loopctl import ledger, lifecycle, pareto
from loopctl.audit import provenance_of_proposal
from loopctl.command import heartbeats
from loopctl.dashboard.liveness import controller_running
from loopctl.events import describe
from loopctl.integrity import verified_spec
from loopctl.spec import Spec
from loopctl.spec_types import CompositionParam, FixedParam, FormulaParam, StructureParam
from loopctl.status import awaiting_approval
from loopctl.store import Store
from loopctl.values import flat

# trials drawn in the per-driver timeline: the latest ones (who is busy now matters most)
TIMELINE_TRIALS = 400
# points of the hypervolume-over-time curve (computed at evenly spaced trial counts)
HV_POINTS = 200
PAGE_SIZES = (10, 25, 50, 100)
SORTABLE = ("number", "status", "origin", "driver", "created_at", "started_at", "finished_at")


class Campaign:
    """One campaign database, its spec checked once when the dashboard starts (a tampered
    database is refused as `status` refuses it); the spec does not change afterwards."""

    def __init__(self, path: str) -> None:
        self.path = path
        with Store.open(path, readonly=True) as store:
            self.spec: Spec = verified_spec(store)
        self.objectives = [o.name for o in self.spec.objectives]
        self.params = [p.name for p in self.spec.space if not isinstance(p, FixedParam)]

    @contextmanager
    def store(self) -> Iterator[Store]:
        with Store.open(self.path, readonly=True) as store:
            yield store

    # ------------------------------------------------------------------ cheap change check

    def head(self) -> int:
        """The newest event's number: what the live stream polls (one primary-key lookup)."""
        conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=5)
        try:
            return int(conn.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0])
        finally:
            conn.close()

    # ------------------------------------------------------------------ progress

    def summary(self) -> dict[str, Any]:
        spec = self.spec
        with self.store() as store:
            counts = {s: 0 for s in lifecycle.STATUSES}
            counts.update(store.counts())
            own = ledger.run_counts(store)
            target = store.run_settings().get("trials") or spec.budget.trials
            controller = store.meta("controller") or {}
            by_driver: dict[str, dict[str, int]] = {}
            last_seen: dict[str, float] = {}
            for drv, status, n, seen in store.conn.execute(
                "SELECT driver, status, COUNT(*), MAX(MAX(COALESCE(started_at, 0), "
                "COALESCE(finished_at, 0))) FROM trials WHERE driver IS NOT NULL "
                "GROUP BY driver, status"
            ):
                by_driver.setdefault(drv, {})[status] = n
                last_seen[drv] = max(last_seen.get(drv, 0.0), seen or 0.0)
            # never the lock probe `status` makes: see loopctl.dashboard.liveness
            running = controller_running(self.path, bool(controller.get("running")))
            # heartbeats live in the controller's memory only: it is asked for them
            live = heartbeats(controller) if running else None
            heard = {d["name"]: d["seconds_since_heard"] for d in live or []}
            drivers = [
                {
                    "name": d["name"],
                    "kind": d["kind"],
                    "version": d["version"],
                    "capacity": d["capacity"],
                    "status": d["status"] if running else "not connected (no controller)",
                    "connected_at": d["connected_at"],
                    "updated_at": d["updated_at"],
                    "last_trial_activity": last_seen.get(d["name"]),
                    "seconds_since_heard": heard.get(d["name"]),
                    "trials": by_driver.get(d["name"], {}),
                }
                for d in store.drivers()
            ]
            best = ledger.best(store, spec) if len(spec.objectives) == 1 else None
            return {
                "campaign": spec.name,
                "description": spec.description,
                "path": self.path,
                "now": time.time(),
                "head": self.head(),
                "objectives": [
                    {"name": o.name, "goal": o.goal, "unit": o.unit} for o in spec.objectives
                ],
                "parameters": self.params,
                "approval": spec.execution.approval,
                "controller": {
                    "running": running,
                    "pid": controller.get("pid"),
                    "stopped": None if controller.get("running") else controller.get("reason"),
                },
                "paused": bool((store.meta("paused") or {}).get("paused")),
                "finished": store.meta("finished"),
                "last_error": store.meta("last_error"),
                "trials": counts,
                "budget": {"trials": target, "completed": own.get(lifecycle.COMPLETED, 0)},
                "drivers": drivers,
                "unassigned": {
                    s: n
                    for s, n in store.conn.execute(
                        "SELECT status, COUNT(*) FROM trials WHERE driver IS NULL GROUP BY status"
                    )
                },
                "awaiting_approval": awaiting_approval(store, spec),
                "best": best and {k: best[k] for k in ("trial_id", "value", "parameters")},
                "timeline": self._timeline(store),
            }

    def _timeline(self, store: Store) -> list[dict[str, Any]]:
        rows = store.conn.execute(
            "SELECT id, driver, status, started_at, finished_at FROM trials "
            "WHERE started_at IS NOT NULL ORDER BY number DESC LIMIT ?",
            (TIMELINE_TRIALS,),
        ).fetchall()
        return [
            {"trial": t, "driver": d or "?", "status": s, "start": a, "end": b}
            for t, d, s, a, b in reversed(rows)
        ]

    # ------------------------------------------------------------------ results

    def series(self) -> dict[str, Any]:
        """Completed trials in order, columnar: number, id, how chosen, every objective and
        every flat parameter column; the Pareto front and hypervolume for several objectives."""
        spec = self.spec
        with self.store() as store:
            strategies = dict(store.conn.execute("SELECT id, strategy FROM proposals"))
            obs = store.observations()
            rows = store.conn.execute(
                "SELECT id, number, origin, proposal_id, parameters FROM trials "
                "WHERE status = 'completed' ORDER BY number"
            ).fetchall()
        out: dict[str, Any] = {"number": [], "trial": [], "kind": []}
        objs: dict[str, list[float | None]] = {o: [] for o in self.objectives}
        cols: dict[str, list[Any]] = {}
        for i, (tid, number, origin, pid, text) in enumerate(rows):
            out["number"].append(number)
            out["trial"].append(tid)
            out["kind"].append(strategies.get(pid, origin) if pid else origin)
            got = obs.get(tid, {})
            for o in self.objectives:
                v = got.get(o)
                objs[o].append(v[0] if v else None)
            for k, v in flat(spec.space, json.loads(text)).items():
                if (isinstance(v, (int, float)) and not isinstance(v, bool)) or isinstance(v, str):
                    cols.setdefault(k, [None] * i).append(v)
            for col in cols.values():  # a column a trial lacked stays aligned
                if len(col) < i + 1:
                    col.append(None)
        out["objectives"] = objs
        out["goals"] = {o.name: o.goal for o in spec.objectives}
        out["params"] = cols
        if len(spec.objectives) >= 2:
            out["pareto"] = self._front(objs)
        return out

    def _front(self, objs: dict[str, list[float | None]]) -> dict[str, Any]:
        """Which completed trials are on the Pareto front of every objective (the page draws
        it over the first two), and the hypervolume of the observed front as trials
        completed (reference point: the worst value seen of each objective)."""
        cols = [(objs[o.name], o.sign) for o in self.spec.objectives]
        idx = [i for i in range(len(cols[0][0])) if all(c[i] is not None for c, _ in cols)]
        pts = [tuple(-sign * float(c[i] or 0) for c, sign in cols) for i in idx]
        if not pts:
            return {"on_front": [], "hv": [], "hv_at": []}
        on = pareto.pareto_mask(pts)
        ref = tuple(max(p[j] for p in pts) for j in range(len(cols)))
        volume = pareto.hypervolume_2d if len(cols) == 2 else pareto.hypervolume
        step = max(1, len(pts) // HV_POINTS)
        front: list[tuple[float, ...]] = []
        hv, at = [], []
        for k, p in enumerate(pts):
            if not any(pareto.dominates(q, p) or q == p for q in front):
                front = [q for q in front if not pareto.dominates(p, q)] + [p]
            if (k + 1) % step == 0 or k == len(pts) - 1:
                hv.append(volume(front, ref))
                at.append(k + 1)
        return {"on_front": [idx[i] for i, f in enumerate(on) if f], "hv": hv, "hv_at": at}

    # ------------------------------------------------------------------ the trial table

    def trials_page(
        self,
        page: int = 1,
        size: int = 25,
        sort: str = "number",
        desc: bool = False,
        status: str = "",
        query: str = "",
    ) -> dict[str, Any]:
        """One page of the trial table, sorted and filtered in SQL (never the whole table)."""
        size = size if size in PAGE_SIZES else 25
        where, args = [], []
        if status:
            where.append("t.status = ?")
            args.append(status)
        if query:
            where.append(
                "(t.id LIKE ? OR t.driver LIKE ? OR t.origin LIKE ? OR t.parameters LIKE ?)"
            )
            args += [f"%{query}%"] * 4
        cond = f"WHERE {' AND '.join(where)}" if where else ""
        metric = "(SELECT value FROM observations o WHERE o.trial_id = t.id AND o.metric = ?)"
        objs = ", ".join(f"{metric} AS m{i}" for i in range(len(self.objectives)))
        if sort in self.objectives:
            order = f"m{self.objectives.index(sort)}"
        else:
            order = f"t.{sort if sort in SORTABLE else 'number'}"
        direction = "DESC" if desc else "ASC"
        with self.store() as store:
            total = store.conn.execute(f"SELECT COUNT(*) FROM trials t {cond}", args).fetchone()[0]
            pages = max(1, -(-total // size))
            page = min(max(1, page), pages)
            cur = store.conn.execute(
                f"SELECT t.id, t.number, t.status, t.origin, t.proposal_id, t.parameters, "
                f"t.driver, t.attempts, t.created_at, t.started_at, t.finished_at, t.reason"
                f"{', ' + objs if objs else ''} FROM trials t {cond} "
                f"ORDER BY {order} IS NULL, {order} {direction}, t.number LIMIT ? OFFSET ?",
                [*self.objectives, *args, size, (page - 1) * size],
            )
            rows = cur.fetchall()
            ids = [r[0] for r in rows]
            pids = sorted({r[4] for r in rows if r[4]})
            proposals = _by_id(store, "SELECT id, strategy, version FROM proposals", pids)
            results = _results(store, ids)
        trials = []
        for r in rows:
            tid, number, st, origin, pid, text, drv, attempts, c_at, s_at, f_at, reason = r[:12]
            meta = results.get(tid, {})
            prop = proposals.get(pid or "")
            trials.append(
                {
                    "trial": tid,
                    "number": number,
                    "status": st,
                    "origin": origin,
                    "parameters": flat(self.spec.space, json.loads(text)),
                    "outcomes": dict(zip(self.objectives, r[12:], strict=True)),
                    "chosen_by": f"{prop[0]} ({prop[1]})" if prop else origin,
                    "measured_by": meta.get("operator") or drv,
                    "driver_version": meta.get("driver_version"),
                    "attempts": attempts,
                    "created_at": c_at,
                    "started_at": s_at,
                    "finished_at": f_at,
                    "reason": reason,
                }
            )
        return {
            "page": page,
            "pages": pages,
            "size": size,
            "total": total,
            "sort": sort,
            "desc": desc,
            "trials": trials,
        }

    # ------------------------------------------------------------------ why a trial was chosen

    def trial(self, tid: str) -> dict[str, Any] | None:
        """A trial with the story of its choice: what the strategy's diagnostics recorded
        (prediction, uncertainty, acquisition against the batch's others, lengthscales
        named by parameter, the surrogate's and strategy's reasons) and its events."""
        with self.store() as store:
            t = store.trial(tid)
            if t is None:
                return None
            row = store.conn.execute(
                "SELECT * FROM proposals WHERE id = ?", (t["proposal_id"] or "",)
            ).fetchone()
            names = [
                c[0] for c in store.conn.execute("SELECT * FROM proposals LIMIT 0").description
            ]
            outcomes = {
                m: {"value": v, "sem": s}
                for m, v, s in store.conn.execute(
                    "SELECT metric, value, sem FROM observations WHERE trial_id = ?", (tid,)
                )
            }
            events = []
            for ev in reversed(store.trial_events(tid)):
                try:
                    text = describe(ev.kind, ev.payload)
                except (KeyError, TypeError, ValueError):
                    text = ev.kind
                events.append({"seq": ev.seq, "time": ev.time, "kind": ev.kind, "text": text})
        out: dict[str, Any] = {
            "trial": tid,
            "status": t["status"],
            "origin": t["origin"],
            "driver": t["driver"],
            "parameters": flat(self.spec.space, t["parameters"]),
            "outcomes": outcomes,
            "events": events,
            "proposal": None,
        }
        if row is not None:
            p = dict(zip(names, row, strict=True))
            p["diagnostics"] = json.loads(p["diagnostics"])
            p["trial_ids"] = json.loads(p["trial_ids"])
            out["proposal"] = self._why(p, tid)
        return out

    def _why(self, p: dict[str, Any], tid: str) -> dict[str, Any]:
        diag = p["diagnostics"]
        why = provenance_of_proposal(p, tid)
        cands = diag.get("candidates") or []
        why["alternatives"] = [
            {"trial": c.get("trial_id"), "acquisition": c.get("acquisition")} for c in cands
        ]
        why["acquisition_function"] = diag.get("acquisition")
        why["surrogate"] = diag.get("surrogate")
        why["n_pending"] = diag.get("n_pending")
        why["warnings"] = diag.get("warnings") or []
        ls = diag.get("lengthscales")
        why["importance"] = self._importance(ls) if isinstance(ls, list) else None
        return why

    def _importance(self, lengthscales: list[float]) -> list[dict[str, Any]]:
        """Lengthscales named by the model input they belong to; importance is their inverse
        (a short lengthscale: the objective changes fast along that input)."""
        labels: list[str] = []
        for p in self.spec.space:
            if isinstance(p, (FixedParam, StructureParam)):
                continue
            if isinstance(p, CompositionParam):
                labels += [f"{p.name}.{e}" for e in p.elements]
            elif isinstance(p, FormulaParam):
                from loopctl.features import NAMES

                labels += [f"{p.name}:{n}" for n in NAMES]
            else:
                labels.append(p.name)
        if len(labels) != len(lengthscales):
            labels = [f"input {i + 1}" for i in range(len(lengthscales))]
        return [
            {"input": label, "lengthscale": ls, "importance": 1.0 / ls if ls > 0 else None}
            for label, ls in zip(labels, lengthscales, strict=True)
        ]


def _by_id(store: Store, sql: str, ids: list[str]) -> dict[str, tuple[Any, ...]]:
    if not ids:
        return {}
    marks = ",".join("?" for _ in ids)
    return {r[0]: r[1:] for r in store.conn.execute(f"{sql} WHERE id IN ({marks})", ids)}


def _results(store: Store, ids: list[str]) -> dict[str, dict[str, Any]]:
    """The metadata recorded with each trial's result (who entered it, the driver's version)."""
    if not ids:
        return {}
    marks = ",".join("?" for _ in ids)
    out: dict[str, dict[str, Any]] = {}
    for tid, payload in store.conn.execute(
        f"SELECT trial_id, payload FROM events WHERE trial_id IN ({marks}) "
        "AND kind IN ('trial_completed', 'trial_imported') ORDER BY seq",
        ids,
    ):
        out[tid] = json.loads(payload).get("metadata") or {}
    return out
