"""`loopctl audit`: is the history intact, do the tables agree with it, and how was each
trial chosen?

Whether the database is intact is decided by :mod:`loopctl.integrity`, the same check
`status`, `export` and `report` make before they read; `audit` lists every problem it
finds, each with the first event whose effect no longer matches, which is where a
reviewer should look.
"""

from __future__ import annotations

import functools
import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from loopctl import receipts
from loopctl.events import describe, kind_of
from loopctl.integrity import check
from loopctl.store import Store


def audit(
    store: Store,
    expect_head: str | None = None,
    receipts_dir: Path | None = None,
    *,
    full: bool = False,
) -> dict[str, Any]:
    """The integrity check every reading command shares, in full, with the story around it.

    ``expect_head``: the hash of an event recorded elsewhere (an earlier audit's ``head``).
    The chain proves the log is consistent, not that it is the same log: whoever can write
    the file can rewrite it all. A head kept outside the file must still be in the log,
    at its place, or the history up to it was changed or cut. ``receipts_dir``: the
    drivers' receipts (:mod:`loopctl.receipts`), every one of which must still be in the
    log as acknowledged: the second anchor, kept by the drivers without anyone's care.
    ``full``: fold the log again even where a verified checkpoint still holds."""
    verdict = check(store, full=full)
    problems = list(verdict.problems)
    row = store.conn.execute("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1").fetchone()
    head = {"seq": row[0], "hash": row[1]} if row else {"seq": 0, "hash": None}
    if expect_head:
        found = store.conn.execute(
            "SELECT seq FROM events WHERE hash = ?", (expect_head.strip().lower(),)
        ).fetchone()
        if found is None:
            problems.append(
                {
                    "check": "expected head",
                    "event": None,
                    "message": f"the head {expect_head[:16]}... recorded elsewhere is not in "
                    "this log: the history up to it was rewritten or cut",
                }
            )
    kept = None
    if receipts_dir is not None:
        found = receipts.find(receipts_dir, store.campaign_id())
        problems += receipts.check(store, found)
        kept = receipts.summary(found)
    return {
        "ok": not problems,
        "chain": verdict.chain,
        "tables": verdict.tables,
        "head": head,
        "receipts": kept,
        "problems": problems,
        "first_bad_event": verdict.problems[0]["event"] if verdict.problems else None,
        "prior": prior_sources(store),
        "timeline": timeline(store, checked=verdict.ok),
        "trials": provenance(store),
    }


def _when(t: float | None) -> str:
    if t is None:
        return "-"
    return _second(math.floor(round(t, 6)))  # as fromtimestamp rounds to microseconds


@functools.lru_cache(maxsize=4096)
def _second(t: int) -> str:
    """A second's date and time, formatted once: a campaign's events come many a second,
    and formatting each (two per event and trial) was a tenth of an audit."""
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S")


def timeline(store: Store, *, checked: bool = False) -> list[dict[str, Any]]:
    """One line per event, in words: proposals, dispatches, results, drivers coming and going.

    ``checked``: the log has just passed the integrity check, whose fold (then, or at the
    checkpoint that vouches for these very events) checked every payload against its
    kind; they are described without checking each again (a third of the timeline)."""
    out = []
    cur = store.conn.execute("SELECT seq, time, kind, trial_id, payload FROM events ORDER BY seq")
    for seq, t, kind, trial_id, payload in cur:
        try:
            data = json.loads(payload)
            text = kind_of(kind).describe(data) if checked else describe(kind, data)
        except (KeyError, TypeError, ValueError):  # a tampered event still gets a line
            text = f"{kind} (payload does not fit this kind of event)"
        out.append({"seq": seq, "time": _when(t), "trial": trial_id, "event": text})
    return out


def prior_sources(store: Store) -> list[dict[str, Any]]:
    """The campaign's prior data as its stored spec keeps it (the rows themselves, so a
    replay needs no file), with where they came from, and whether the file named is still
    as it was when the campaign started (for the reader: nothing depends on it)."""
    from loopctl.prior_file import file_sha256, resolve

    spec = store.meta("spec") or {}
    out = []
    for item in spec.get("prior") or []:
        entry = {
            "file": item.get("file"),
            "sha256": item.get("sha256"),
            "campaign": item.get("campaign"),
            "rows": len(item.get("rows") or []),
            "dropped": item.get("dropped") or {},
        }
        file = item.get("file")
        if file is None:
            entry["file_now"] = "rows written out in the campaign file"
        else:
            path = resolve(file, store.meta("source") or "")
            if not path.is_file():
                entry["file_now"] = f"{path} is gone (the rows are stored here)"
            elif item.get("sha256") and file_sha256(path) != item["sha256"]:
                entry["file_now"] = f"{path} has changed since (the rows used are stored here)"
            else:
                entry["file_now"] = f"{path} unchanged"
        out.append(entry)
    return out


def provenance(store: Store) -> list[dict[str, Any]]:
    """Per trial: who chose it, from what, with which model, and who ran it when."""
    proposals = {p["id"]: p for p in store.proposals()}
    obs = store.observations()
    out = []
    for t in store.trials():
        p = proposals.get(t["proposal_id"] or "")
        entry: dict[str, Any] = {
            "trial": t["id"],
            "status": t["status"],
            "origin": t["origin"],
            "parameters": t["parameters"],
            "outcomes": {m: v[0] for m, v in obs.get(t["id"], {}).items()},
            "driver": t["driver"],
            "attempts": t["attempts"],
            "started": _when(t["started_at"]),
            "finished": _when(t["finished_at"]),
        }
        if p is not None:
            entry["proposal"] = provenance_of_proposal(p, t["id"])
        out.append(entry)
    return out


def provenance_of_proposal(p: dict[str, Any], trial_id: str) -> dict[str, Any]:
    """What a proposal's recorded diagnostics say about how it chose ``trial_id``: the
    strategy and its version and seed, the data the model saw, its lengthscales, and the
    candidate's predicted outcomes (mean, sd) and acquisition value. The dashboard draws
    the same."""
    diag = p["diagnostics"]
    cand: dict[str, Any] = next(
        (c for c in diag.get("candidates", []) if c["trial_id"] == trial_id), {}
    )
    return {
        "id": p["id"],
        "strategy": p["strategy"],
        "version": p["version"],
        "seed": p["seed"],
        "data_hash": diag.get("data_hash"),
        "n_train": diag.get("n_train"),
        "lengthscales": diag.get("lengthscales"),
        "noise": diag.get("noise"),
        "acquisition": cand.get("acquisition"),
        "predicted": cand.get("predicted"),
        "why": (diag.get("auto") or {}).get("reason"),
    } | _prior_correlation(diag)


def _prior_correlation(diag: dict[str, Any]) -> dict[str, Any]:
    """Transfer campaigns: each prior source's learned correlation with this campaign."""
    prior = diag.get("prior")
    if not isinstance(prior, dict):
        return {}
    out: dict[str, Any] = {
        "prior_correlation": [s.get("correlation") for s in prior.get("sources") or []]
    }
    gate = prior.get("gate")
    if isinstance(gate, dict) and "use_prior" in gate:
        out["prior_used"] = bool(gate["use_prior"])
    return out


def format_audit(report: dict[str, Any], path: str) -> str:
    lines = [
        f"audit of {path}: " + ("OK" if report["ok"] else "FAILED"),
        f"hash chain: {report['chain']}",
        f"tables: {report['tables']}",
        f"head: event {report['head']['seq']}, hash {report['head']['hash']} (keep it "
        "elsewhere; audit --expect-head checks the log against it)",
    ]
    kept = report.get("receipts")
    if kept is not None:
        torn = kept["unreadable_lines"]
        lines.append(
            f"receipts: {kept['receipts']} from {len(kept['files'])} file(s), highest event "
            f"{kept['highest']}" + (f"; {torn} unreadable line(s) skipped" if torn else "")
        )
    for p in report["problems"]:
        at = f"event {p['event']}" if p["event"] is not None else "no event"
        lines.append(f"  PROBLEM ({p['check']}, first bad: {at}): {p['message']}")
    if report.get("prior"):
        lines.append("")
        lines.append("prior data (stored in the campaign; replay uses these rows):")
        for p in report["prior"]:
            dropped = sum(p["dropped"].values())
            facts = [f"{p['rows']} rows"]
            if p["sha256"]:
                facts.append(f"sha256 {p['sha256']}")
            if p["campaign"]:
                facts.append(f"campaign {p['campaign']}")
            if dropped:
                facts.append(f"{dropped} rows dropped when read")
            lines.append(f"  {p['file'] or '(inline rows)'}: {', '.join(facts)}; {p['file_now']}")
    lines.append("")
    lines.append("timeline:")
    for e in report["timeline"]:
        lines.append(f"  {e['seq']:>5} {e['time']} {e['trial'] or '':<6} {e['event']}")
    lines.append("")
    lines.append("provenance:")
    for t in report["trials"]:
        pr = t.get("proposal") or {}
        chosen = (
            (
                f"{pr.get('strategy')} {pr.get('version')} seed {pr.get('seed')}"
                f" ({pr.get('why') or 'no reason recorded'})"
            )
            if pr
            else t["origin"]
        )
        n = t["attempts"]
        lines.append(
            f"  {t['trial']} {t['status']}: chosen by {chosen}; ran on "
            f"{t['driver'] or '-'} ({n} attempt{'' if n == 1 else 's'}) {t['started']} -> "
            f"{t['finished']}"
        )
        if pr.get("lengthscales") is not None:
            lines.append(
                f"        model saw {pr.get('n_train')} results "
                f"(data {str(pr.get('data_hash'))[:12]}), lengthscales "
                f"{[round(x, 3) for x in pr['lengthscales']]}, acquisition "
                f"{pr.get('acquisition')}, predicted {pr.get('predicted')}"
                + (
                    f", prior correlation {pr['prior_correlation']}"
                    if pr.get("prior_correlation") is not None
                    else ""
                )
                + (
                    f", prior {'used' if pr['prior_used'] else 'set aside (the cold GP chose)'}"
                    if pr.get("prior_used") is not None
                    else ""
                )
            )
    return "\n".join(lines)
