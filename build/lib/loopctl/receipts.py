"""Receipts: what the controller acknowledged, kept by the drivers, checked against the log.

The hash chain proves that a log is consistent with itself, not that it is the log the
controller acknowledged from: a restored backup, a lost WAL or a log re-folded after a cut
all pass the chain check. Every ACK therefore carries the sequence number and hash of the
event that recorded the report, and the SDK appends it to ``receipts.jsonl`` beside the
campaign's outbox. The receipts live on the drivers' machines, out of reach of whoever can
rewrite the database; `loopctl audit --receipts DIR` checks each one against the log.

A receipt is written after the ACK arrives and is not fsynced: a killed driver keeps all
of them (the page cache survives the process), a power cut may lose the last few, which
only means those reports are not checked. A torn last line is skipped and counted.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loopctl.errors import LoopctlError

if TYPE_CHECKING:  # the SDK writes receipts without loading the store
    from loopctl.store import Store

FILE = "receipts.jsonl"
REPORTS = "'trial_completed', 'trial_failed', 'trial_released'"  # the event kinds receipted


def append(folder: Path, driver: str, ack: Mapping[str, Any]) -> None:
    """One line per ACK that carries a receipt; opened in append mode so lines written
    by a driver's earlier runs are never rewritten."""
    line = {
        "campaign_id": ack["campaign_id"],
        "trial": ack["trial"],
        "seq": ack["seq"],
        "hash": ack["hash"],
        "event": ack.get("event"),
        "driver": driver,
        "time": time.time(),
    }
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, (json.dumps(line, sort_keys=True) + "\n").encode())
    finally:
        os.close(fd)


@dataclass
class Found:
    receipts: list[dict[str, Any]] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    unreadable: int = 0  # lines that are not a receipt (a torn last line, say)


def find(root: Path, campaign_id: str) -> Found:
    """Every receipt for this campaign under ``root`` (a driver's outbox, the outboxes of
    several drivers, or a directory of copies gathered from their machines)."""
    if not root.is_dir():
        raise LoopctlError(f"{root}: no such directory of receipts")
    out = Found()
    for path in sorted(root.rglob(FILE)):
        mine = False
        for text in path.read_text(errors="replace").splitlines():
            try:
                r = json.loads(text)
                ok = isinstance(r["seq"], int) and isinstance(r["hash"], str)
            except (ValueError, KeyError, TypeError):
                ok = False
            if not ok:
                out.unreadable += 1
            elif r.get("campaign_id") == campaign_id:
                out.receipts.append(r)
                mine = True
        if mine:
            out.files.append(path)
    return out


def check(store: Store, found: Found) -> list[dict[str, Any]]:
    """Problems, one per acknowledged event that the log no longer holds as acknowledged."""
    from loopctl.campaign import API_DRIVER

    row = store.conn.execute("SELECT max(seq) FROM events").fetchone()
    last = row[0] or 0
    problems: list[dict[str, Any]] = []
    if not found.receipts:
        (reports,) = store.conn.execute(
            f"SELECT COUNT(*) FROM events WHERE kind IN ({REPORTS}) AND "
            "coalesce(json_extract(payload, '$.driver'), ?) != ?",
            (API_DRIVER, API_DRIVER),
        ).fetchone()
        if reports:
            problems.append(
                {
                    "check": "receipts",
                    "event": None,
                    "message": f"the log records {reports} report(s) from drivers but there "
                    f"is no receipt for this campaign ({store.campaign_id()}) under the "
                    "directory given: the wrong directory, drivers older than receipts, or "
                    "a campaign whose identity was changed",
                }
            )
    seen: set[int] = set()
    for r in sorted(found.receipts, key=lambda r: r["seq"]):
        if r["seq"] in seen:
            continue
        seen.add(r["seq"])
        ev = store.conn.execute(
            "SELECT hash, trial_id FROM events WHERE seq = ?", (r["seq"],)
        ).fetchone()
        what = (
            f"the {r.get('event') or 'report'} of trial {r['trial']} acknowledged to "
            f"{r.get('driver')} as event {r['seq']}"
        )
        if ev is None:
            why = (
                f"is not in the log, which ends at event {last}: the database was "
                "restored from an older copy, lost its WAL, or was cut"
            )
        elif ev[0] != r["hash"] or ev[1] != r["trial"]:
            why = "differs from the log's event there: the log was rewritten from there on"
        else:
            continue
        problems.append({"check": "receipts", "event": r["seq"], "message": f"{what} {why}"})
    return problems


def summary(found: Found) -> dict[str, Any]:
    seqs = [r["seq"] for r in found.receipts]
    return {
        "receipts": len(found.receipts),
        "files": [str(p) for p in found.files],
        "highest": max(seqs) if seqs else None,
        "unreadable_lines": found.unreadable,
    }
