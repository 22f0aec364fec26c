"""`loopctl audit --replay`: recompute every proposal from the recorded data and seed.

Each proposal stores the sequence number of the last event its strategy saw
(``data_seq``). Folding the log up to that event rebuilds exactly the data,
pending points and seed it had; the same strategy then has to come up with the
same candidates. A proposal made to replace stale ready candidates (propose-ahead,
``execution.refresh_after``) names them in ``replaces``, and was made without them as
pending points: the replay leaves them out too. Differences are measured in the encoded
space, where every parameter spans about [0, 1].
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from loopctl.ledger import DataView
from loopctl.space import Space
from loopctl.spec import Spec
from loopctl.store import Store
from loopctl.strategies import make_strategy

TOLERANCE = 1e-4  # max |difference| of any encoded coordinate, for model-based proposals


def replay(store: Store, spec: Spec) -> list[dict[str, Any]]:
    space = Space.for_spec(spec)
    view = DataView(store, spec, space)
    strategy = make_strategy(spec)
    proposed: dict[str, dict[str, Any]] = {}
    levels: dict[str, str | None] = {}  # campaigns with fidelities: each trial's level
    proposals = []
    for ev in store.events():
        if ev.kind == "trial_proposed" and ev.trial_id:
            proposed[ev.trial_id] = ev.payload["parameters"]
            levels[ev.trial_id] = ev.payload.get("fidelity")
        elif ev.kind == "proposal_made":
            proposals.append(ev.payload)
    return [_replay_one(p, view, strategy, space, proposed, levels) for p in proposals]


def _replay_one(
    p: dict[str, Any],
    view: DataView,
    strategy: Any,
    space: Space,
    proposed: dict[str, dict[str, Any]],
    levels: dict[str, str | None],
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "proposal": p["id"],
        "strategy": p["strategy"],
        "trials": p["trial_ids"],
    }
    if p.get("data_seq") is None:
        return entry | {"ok": None, "note": "not replayable: no data_seq recorded"}
    if view.seq > p["data_seq"]:  # proposals are in log order; restart the fold if needed
        view.reset()
    # a proposal that replaced ready candidates was made without them as pending points
    data = view.refresh(until=p["data_seq"], excluding=p.get("replaces") or ())
    t0 = time.perf_counter()
    try:
        again = strategy.propose(data, len(p["trial_ids"]))
    except Exception as exc:  # an audit reports, it does not stop at the first surprise
        return entry | {"ok": False, "note": f"replay raised {type(exc).__name__}: {exc}"}
    recorded = np.stack([space.encode(proposed[t]) for t in p["trial_ids"]])
    if len(again.candidates) != len(p["trial_ids"]) or again.strategy != p["strategy"]:
        return entry | {
            "ok": False,
            "note": f"replay gave {len(again.candidates)} candidates from {again.strategy}",
        }
    fresh = np.stack([space.encode(c.parameters) for c in again.candidates])
    diff = float(np.max(np.abs(recorded - fresh))) if recorded.size else 0.0
    was = [levels.get(t) for t in p["trial_ids"]]
    now = [c.fidelity for c in again.candidates]
    if was != now:  # the same candidates at other levels are another proposal
        return entry | {"ok": False, "note": f"replay chose fidelities {now}, recorded {was}"}
    return entry | {
        "ok": diff <= TOLERANCE,
        "max_difference": diff,
        "seconds": round(time.perf_counter() - t0, 3),
    }


def format_replay(results: list[dict[str, Any]]) -> str:
    lines = [f"replay (tolerance {TOLERANCE:g} in encoded coordinates):"]
    for r in results:
        verdict = {True: "same", False: "DIFFERENT", None: "skipped"}[r["ok"]]
        detail = r.get("note") or f"max difference {r['max_difference']:.2e}"
        lines.append(
            f"  {r['proposal']} {r['strategy']:<8} {','.join(r['trials'])}: {verdict} ({detail})"
        )
    return "\n".join(lines)
