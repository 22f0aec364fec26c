"""`loopctl status`: a read-only look at a campaign, safe while its controller runs."""

from __future__ import annotations

import time
from typing import Any

from loopctl import costs, ledger, lifecycle
from loopctl.integrity import verified_spec
from loopctl.progress import describe_best, describe_simulated, format_parameters
from loopctl.spec_types import Fidelities
from loopctl.store import Store, is_locked


def campaign_status(path: str) -> dict[str, Any]:
    with Store.open(path, readonly=True) as store:
        spec = verified_spec(store)
        counts = {s: 0 for s in lifecycle.STATUSES}
        counts.update(store.counts())
        own = ledger.run_counts(store)
        controller = store.meta("controller") or {}
        target = store.run_settings().get("trials") or spec.budget.trials
        running = is_locked(path)
        drivers = [
            {"name": d["name"], "kind": d["kind"], "status": d["status"], "capacity": d["capacity"]}
            for d in store.drivers()
        ]
        out: dict[str, Any] = {
            "campaign": spec.name,
            "path": path,
            "controller": {
                "running": running,
                "endpoint": controller.get("endpoint"),
                "pid": controller.get("pid"),
                "stopped": None if controller.get("running") else controller.get("reason"),
            }
            if controller
            else {"running": running},
            "last_error": store.meta("last_error"),
            "trials": counts,
            "imported": store.conn.execute(
                "SELECT COUNT(*) FROM trials WHERE origin = 'imported'"
            ).fetchone()[0],
            "budget": {
                "trials": target,
                "completed": own.get(lifecycle.COMPLETED, 0),
                "left": max(0, target - own.get(lifecycle.COMPLETED, 0)),
            },
            "drivers": drivers,
            "connected_drivers": sum(1 for d in drivers if d["status"] == "connected")
            if running
            else 0,
            "finished": store.meta("finished"),
            "awaiting_approval": awaiting_approval(store, spec),
            "paused": bool((store.meta("paused") or {}).get("paused")),
        }
        # when each driver was last heard from: only the controller knows (it is asked)
        out["heartbeats"] = None
        if running:  # zmq only then: `status` of a stopped campaign stays light
            from loopctl.command import heartbeats

            out["heartbeats"] = heartbeats(controller)
        if spec.fidelities is not None:
            out["fidelities"] = fidelity_status(store, spec.fidelities, spec.budget.cost)
        if len(spec.objectives) == 1:
            out["best"] = ledger.best(store, spec)
        else:
            out["pareto"] = ledger.pareto(store, spec)
        return out


def fidelity_status(store: Store, fid: Fidelities, budget: float | None) -> dict[str, Any]:
    """Spent cost (with what is in flight) and completed trials per level."""
    trials = costs.from_store(store.conn, fid)
    done = {level: 0 for level in fid.names}
    for t in trials.values():
        if t.status == lifecycle.COMPLETED:
            done[t.fidelity or fid.target] += 1
    return {
        "target": fid.target,
        "spent": costs.committed(fid, trials),
        "cost_budget": budget,
        "completed": done,
    }


def awaiting_approval(store: Store, spec: Any) -> list[dict[str, Any]]:
    """Proposals an operator has to approve or reject (execution.approval: manual), oldest
    first; none when approval is automatic."""
    if spec.execution.approval != "manual":
        return []
    return [
        {"trial": t["id"], "parameters": t["parameters"], "origin": t["origin"]}
        for t in store.trials(lifecycle.PROPOSED)
    ]


def format_pending(items: list[dict[str, Any]], path: str) -> str:
    if not items:
        return "nothing awaits approval"
    lines = [f"{len(items)} awaiting approval (loopctl approve {path} TRIAL..., or reject):"]
    lines += [f"  {i['trial']}: {format_parameters(i['parameters'])}" for i in items]
    return "\n".join(lines)


def format_pareto(front: list[dict[str, Any]], show: int = 20) -> list[str]:
    """The non-dominated trials, one line each with every objective (the first ``show``)."""
    lines = [f"Pareto set: {len(front)} trials (none beaten on every objective)"]
    for p in front[:show]:
        values = ", ".join(f"{k}={v:.6g}" for k, v in p["outcomes"].items())
        lines.append(f"  {p['trial_id']}: {values}  ({format_parameters(p['parameters'])})")
    if len(front) > show:
        lines.append(f"  ... and {len(front) - show} more (--json lists every one)")
    return lines


def format_status(st: dict[str, Any]) -> str:
    ctl = st["controller"]
    if ctl["running"] and ctl.get("stopped") is None and ctl.get("pid"):
        state = f"running at {ctl.get('endpoint')} (pid {ctl.get('pid')})"
    elif ctl["running"]:
        state = "starting (the database is held, the controller is not listening yet)"
    elif ctl.get("pid") and ctl.get("stopped") is None:
        state = f"not running: its controller (pid {ctl['pid']}) ended without stopping (killed?)"
    else:
        state = "not running"
    if st.get("finished"):
        state += f"; finished: {st['finished'].get('reason')}"
    elif not ctl["running"] and ctl.get("stopped"):
        state += f"; stopped: {ctl['stopped']}"
    if st.get("paused"):
        state += "; dispatching PAUSED (loopctl unpause)"
    lines = [f"campaign {st['campaign']} ({st['path']})", f"controller: {state}"]
    err = st.get("last_error")
    if err:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(err.get("at", 0)))
        lines.append(
            f"last error: {when} {err.get('stage')}: {err.get('error')} ({err.get('action')})"
        )
    counts = ", ".join(f"{n} {s}" for s, n in st["trials"].items() if n)
    lines.append(
        f"trials: {counts or 'none yet'}"
        + (f" (of which {st['imported']} imported)" if st["imported"] else "")
    )
    if st.get("awaiting_approval"):
        lines.append(format_pending(st["awaiting_approval"], st["path"]))
    b = st["budget"]
    lines.append(f"budget: {b['completed']} of {b['trials']} completed, {b['left']} left")
    if "fidelities" in st:
        f = st["fidelities"]
        of = f" of {f['cost_budget']:g}" if f["cost_budget"] is not None else ""
        per = ", ".join(f"{level} {n}" for level, n in f["completed"].items())
        lines.append(
            f"cost: {f['spent']:g}{of} spent; completed per fidelity: {per} "
            f"(best judged at {f['target']})"
        )
    if "best" in st:
        lines.append(
            f"best: {describe_best(st['best'])}"
            + (f" (trial {st['best']['trial_id']})" if st["best"] else "")
        )
        simulated = describe_simulated(st["best"])
        if simulated:
            lines.append(f"      {simulated}")
    else:
        lines.extend(format_pareto(st["pareto"]))
    live = [d for d in st["drivers"] if d["status"] == "connected"] if ctl["running"] else []
    heard = {d["name"]: d["seconds_since_heard"] for d in st.get("heartbeats") or []}
    names = [
        d["name"] + (f" heard {heard[d['name']]:.1f} s ago" if d["name"] in heard else "")
        for d in live
    ]
    lines.append(
        f"drivers connected: {len(live)}" + (" (" + ", ".join(names) + ")" if live else "")
    )
    return "\n".join(lines)
