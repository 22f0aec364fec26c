"""Trials as flat tables: export (CSV/JSON/DataFrame) and import of past measurements."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from loopctl import costs, ledger
from loopctl.errors import ValidationError
from loopctl.spec import Spec
from loopctl.store import Store
from loopctl.values import flat


def _iso(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, UTC).isoformat()


def trial_rows(store: Store, spec: Spec) -> list[dict[str, Any]]:
    """One row per trial: id, state, parameters, outcomes (with sem), driver, timestamps."""
    obs = store.observations()
    # the strategy only, not every proposal's diagnostics parsed (a sixth of an export)
    strategies = dict(store.conn.execute("SELECT id, strategy FROM proposals"))
    entered = {  # the metadata only, not each whole result parsed
        tid: (json.loads(meta) if meta else None) or {}
        for tid, meta in store.conn.execute(
            "SELECT trial_id, json_extract(payload, '$.metadata') FROM events "
            "WHERE kind IN ('trial_completed', 'trial_imported')"
        )
    }
    standard = {"operator", "notes", "entered_at", "attempt", "driver_version"}
    # columns of imported files that were neither parameters nor outcomes, kept as they were
    extra = sorted({k for m in entered.values() for k in m if k not in standard})
    fid = spec.fidelities
    spent = costs.from_store(store.conn, fid) if fid is not None else {}
    metrics = spec.metric_names  # a property that builds its list: once, not per trial
    rows = []
    for t in store.trials():
        row: dict[str, Any] = {
            "trial_id": t["id"],
            "status": t["status"],
            "origin": t["origin"],
            "strategy": strategies.get(t["proposal_id"]),
        }
        if fid is not None:  # the level it was measured at, and what it cost
            c = spent[t["id"]]
            row["fidelity"] = c.fidelity or fid.target
            row["cost"] = costs.trial_cost(fid, c)
        row.update(flat(spec.space, t["parameters"]))
        meta = entered.get(t["id"], {})
        measured = obs.get(t["id"], {})
        for name in metrics:
            value, sem = measured.get(name, (None, None))
            row[name] = value
            row[f"{name}_sem"] = sem
        row.update(
            {
                "driver": t["driver"],
                "attempts": t["attempts"],
                "created_at": _iso(t["created_at"]),
                "started_at": _iso(t["started_at"]),
                "finished_at": _iso(t["finished_at"]),
                "reason": t["reason"],
                "operator": meta.get("operator"),
                "notes": meta.get("notes"),
                "entered_at": meta.get("entered_at"),
            }
        )
        row.update({k: meta.get(k) for k in extra if k not in row})
        rows.append(row)
    return rows


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _safe(v: Any) -> Any:
    """Text a spreadsheet would run as a formula (driver metadata such as ``=cmd|...``) is
    written with a leading apostrophe, which spreadsheets show as text; numbers untouched."""
    return "'" + v if isinstance(v, str) and v.startswith(FORMULA_START) else v


def to_csv(rows: list[dict[str, Any]]) -> str:
    """The columns of the first row, in its order (every row has the same keys)."""
    buf = io.StringIO()
    if rows:
        names = list(rows[0])
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(names)
        w.writerows([_safe(v) for v in map(r.get, names)] for r in rows)
    return buf.getvalue()


def to_json(rows: list[dict[str, Any]]) -> str:
    return json.dumps(rows, indent=2) + "\n"


def to_parquet(rows: list[dict[str, Any]], path: str | Path) -> None:
    """Columnar, typed export for pandas/polars/R users (needs pyarrow)."""
    import pandas

    pandas.DataFrame(rows).to_parquet(path, index=False)


def import_csv(store: Store, spec: Spec, path: str | Path, force: bool = False) -> list[str]:
    """Add a lab's earlier measurements as completed, ``imported`` trials (all or nothing)."""
    p = Path(path)
    try:
        with p.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            if not reader.fieldnames:
                raise ValidationError(f"{p}: empty file (expected a header row)")
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ValidationError(f"{p}: cannot read CSV: {exc}") from None
    missing = [n for n in spec.metric_names if n not in (reader.fieldnames or [])]
    if missing:
        raise ValidationError(
            f"{p}: no column for objective {missing[0]!r}; columns are "
            f"{', '.join(reader.fieldnames or [])}"
        )
    if not rows:
        raise ValidationError(f"{p}: no data rows")
    for i, row in enumerate(rows):
        if None in row:
            raise ValidationError(f"{p.name} row {i + 2}: more cells than the header has columns")
    from loopctl.space import Space  # numpy: imports need it, `export` does not

    with store.batch() as b:
        return ledger.record_imports(b, spec, Space.for_spec(spec), rows, p.name, force)
