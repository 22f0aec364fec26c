"""The `prior` of a campaign file: measurements of earlier campaigns (a loopctl database)
or a CSV, read once when the campaign starts and kept, row by row, in its stored spec.

Why the rows themselves are stored, and not only the file's hash: the database must
replay every proposal (``audit --replay``) and resume without the file, which may have
moved, changed or gone by then; a hash alone could only say that replay is impossible.
The stored spec is hashed and chained into the event log, so the rows are as tamper-
evident as the trials. The file's path, its sha256 and (for a database) its campaign id
are kept beside them, so that ``audit`` names where the prior came from.

A prior row is checked against this campaign's space: a row with a parameter outside it
(a range's bounds, an unknown category) is dropped, as is a row without a value of the
objective (empty or NaN), and the counts are kept (``dropped``). A file that lacks a
parameter's column, or gives the objective as text, is an error naming file and row.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from loopctl.field_reader import Reader, kind_of
from loopctl.schema import field_of, keys
from loopctl.spec_types import (
    CompositionParam,
    FixedParam,
    Objective,
    Parameter,
    PriorSource,
)

OUTSIDE = "outside this campaign's space"


def no_value(objective: str) -> str:
    return f"no value of {objective}"


def read_prior(
    r: Reader,
    value: Any,
    space: list[Parameter],
    objectives: list[Objective],
    source: str,
) -> tuple[PriorSource, ...]:
    """Each source's rows, checked against ``space``; problems go to ``r``."""
    if value is None:
        return ()
    if not isinstance(value, list) or not value:
        r.problem("prior", f"must be a list of sources (file or rows), got {kind_of(value)}")
        return ()
    if len(objectives) != 1:
        r.problem("prior", "a prior needs a campaign with one objective")
        return ()
    out: list[PriorSource] = []
    for i, item in enumerate(value):
        where = f"prior[{i}]"
        d = r.mapping(item, where)
        if d is None:
            continue
        r.unknown_keys(d, where, keys("prior"))
        got = _source(r, d, where, space, objectives[0].name, source)
        if got is not None:
            out.append(got)
    return tuple(out)


def stored(sources: tuple[PriorSource, ...]) -> list[dict[str, Any]]:
    """The form the database keeps: the rows themselves beside where they came from."""
    out = []
    for s in sources:
        item: dict[str, Any] = {"file": s.file, "sha256": s.sha256, "campaign": s.campaign}
        item = {k: v for k, v in item.items() if v is not None}
        if s.dropped:
            item["dropped"] = dict(s.dropped)
        item["rows"] = [dict(row) for row in s.rows]
        out.append(item)
    return out


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def resolve(file: str, source: str) -> Path:
    """``file`` as the campaign file names it, relative to the campaign file."""
    path = Path(file)
    if not path.is_absolute() and Path(source).is_file():
        path = Path(source).resolve().parent / path
    return path


def _source(
    r: Reader,
    d: Mapping[str, Any],
    where: str,
    space: list[Parameter],
    objective: str,
    source: str,
) -> PriorSource | None:
    file = r.field(d, where, field_of("prior", "file"))
    sha = r.field(d, where, field_of("prior", "sha256"))
    campaign = r.field(d, where, field_of("prior", "campaign"))
    columns = r.mapping(d.get("columns"), f"{where}.columns") or {}
    for name, col in columns.items():
        if name not in {p.name for p in space} | {objective}:
            r.problem(f"{where}.columns.{name}", "is neither a parameter nor the objective")
        elif not isinstance(col, str):
            r.problem(f"{where}.columns.{name}", f"must be a column name, got {kind_of(col)}")
    dropped: dict[str, int] = {}
    given = r.mapping(d.get("dropped"), f"{where}.dropped") or {}
    for reason, n in given.items():
        if isinstance(n, int) and not isinstance(n, bool) and n >= 0:
            dropped[str(reason)] = n
        else:
            r.problem(f"{where}.dropped.{reason}", f"must be a count, got {kind_of(n)}")
    label = where
    rows_in: list[Any]
    if d.get("rows") is not None:
        rows_in = d["rows"] if isinstance(d["rows"], list) else []
        if not rows_in:
            r.problem(
                f"{where}.rows", f"must be a non-empty list of rows, got {kind_of(d['rows'])}"
            )
            return None
    elif file is not None:
        path = resolve(file, source)
        label = str(path)
        if not path.is_file():
            r.problem(f"{where}.file", f"{path}: no such file")
            return None
        digest = file_sha256(path)
        if sha is not None and sha.lower() != digest:
            r.problem(
                f"{where}.sha256",
                f"{path} has changed since its hash was recorded: sha256 {digest[:16]}..., "
                f"recorded {sha[:16]}...",
            )
            return None
        sha = digest
        if path.suffix.lower() == ".db":
            read_db = _database_rows(r, path, where, space, objective, columns)
            if read_db is None:
                return None
            rows_in, campaign = read_db
            columns = {}  # applied already
        else:
            read_csv = _csv_rows(r, path, where, space, objective, columns)
            if read_csv is None:
                return None
            rows_in = read_csv
    else:
        r.problem(where, "give `file` (a database or CSV of measurements) or `rows`")
        return None
    if r.problems:
        return None
    rows = _checked(r, rows_in, label, space, objective, columns, dropped, d.get("rows") is None)
    if rows is None:
        return None
    if not rows:
        r.problem(
            where,
            f"{label}: no usable row ("
            + ", ".join(f"{n} {reason}" for reason, n in dropped.items())
            + ")",
        )
        return None
    return PriorSource(tuple(rows), file, sha, campaign, dropped)


def _checked(
    r: Reader,
    rows_in: list[Any],
    label: str,
    space: list[Parameter],
    objective: str,
    columns: Mapping[str, str],
    dropped: dict[str, int],
    from_file: bool,
) -> list[dict[str, Any]] | None:
    """Rows in canonical form with the objective as a float; drops counted in ``dropped``."""
    # numpy only where a prior is read (`loopctl validate` of other files stays light)
    from loopctl.errors import ValidationError
    from loopctl.space import Space

    check = Space(space)
    rename = {col: name for name, col in columns.items()}
    rows: list[dict[str, Any]] = []
    for i, row in enumerate(rows_in):
        where = f"{label} row {i + 2 if from_file else i + 1}"
        if not isinstance(row, Mapping):
            r.problem(where, f"must be a mapping of values, got {kind_of(row)}")
            return None
        named = {rename.get(k, k): v for k, v in row.items()}
        y = named.get(objective)
        if isinstance(y, str):
            try:
                y = float(y) if y.strip() else None
            except ValueError:
                r.problem(where, f"the objective {objective!r} is {y!r}, not a number")
                return None
        if y is not None and (isinstance(y, bool) or not isinstance(y, int | float)):
            r.problem(where, f"the objective {objective!r} is {kind_of(y)}, not a number")
            return None
        if y is None or not math.isfinite(float(y)):
            dropped[no_value(objective)] = dropped.get(no_value(objective), 0) + 1
            continue
        params = {k: v for k, v in named.items() if k in check.names}
        try:
            values = check.validate(check.unflat(params, where), where)
        except ValidationError:
            dropped[OUTSIDE] = dropped.get(OUTSIDE, 0) + 1
            continue
        rows.append({**values, objective: float(y)})
    return rows


def _required_columns(space: list[Parameter]) -> list[str]:
    """Columns every file must have (compositions may come as element columns)."""
    return [p.name for p in space if not isinstance(p, FixedParam | CompositionParam)]


def _csv_rows(
    r: Reader,
    path: Path,
    where: str,
    space: list[Parameter],
    objective: str,
    columns: Mapping[str, str],
) -> list[dict[str, Any]] | None:
    from loopctl.pool_file import read_pool_csv

    rows = read_pool_csv(r, str(path), str(path))
    if rows is None:
        return None
    header = set(rows[0]) if rows else set()
    rename = {col: name for name, col in columns.items()}
    named = {rename.get(c, c) for c in header}
    for name in [*_required_columns(space), objective]:
        if name not in named:
            col = columns.get(name, name)
            r.problem(
                f"{where}.file",
                f"{path}: no column {col!r} (for {name!r}); its columns are "
                f"{', '.join(sorted(header)) or 'none'} (map one with `columns`)",
            )
    return None if r.problems else [dict(row) for row in rows]


def _database_rows(
    r: Reader,
    path: Path,
    where: str,
    space: list[Parameter],
    objective: str,
    columns: Mapping[str, str],
) -> tuple[list[dict[str, Any]], str] | None:
    """The completed trials of a loopctl database (at its target level, if it has
    fidelities) and its campaign id; its integrity is checked as `status` checks it."""
    from loopctl.errors import LoopctlError
    from loopctl.integrity import verified_spec
    from loopctl.store import Store

    try:
        with Store.open(path, readonly=True) as store:
            spec = verified_spec(store)
            campaign = store.campaign_id()
            levels: dict[str, str | None] = {}
            if spec.fidelities is not None:
                from loopctl import costs

                spent = costs.from_store(store.conn, spec.fidelities)
                levels = {t: c.fidelity or spec.fidelities.target for t, c in spent.items()}
            obs = store.observations()
            trials = store.trials("completed")
    except LoopctlError as exc:
        r.problem(f"{where}.file", f"{path}: {exc}")
        return None
    name = columns.get(objective, objective)
    if name not in spec.metric_names:
        r.problem(
            f"{where}.file",
            f"{path}: campaign {spec.name!r} measured {', '.join(spec.metric_names)}, not "
            f"{name!r} (map the objective with `columns`)",
        )
        return None
    target = spec.fidelities.target if spec.fidelities is not None else None
    rename = {col: n for n, col in columns.items()}
    rows = []
    for t in trials:
        if target is not None and levels.get(t["id"], target) != target:
            continue
        row = {rename.get(k, k): v for k, v in t["parameters"].items()}
        row[objective] = obs.get(t["id"], {}).get(name, (None, None))[0]
        rows.append(row)
    if not rows:
        r.problem(f"{where}.file", f"{path}: campaign {spec.name!r} has no completed trials")
        return None
    return rows, campaign
