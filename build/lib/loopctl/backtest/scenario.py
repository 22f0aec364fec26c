"""A backtest's problem: a campaign's candidates and what each one measured.

The campaign file says what can be varied and what to optimise; a CSV of past
measurements says what each candidate gave. Candidates are the campaign's
pool when it has one, else every distinct row of the CSV (a table turned into a
pool: a look-up can only answer what was measured). Replicates, rows with the
same inputs, are averaged, as Liang et al. pool them.
"""

from __future__ import annotations

import copy
import csv
import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from loopctl.errors import LoopctlError, ValidationError
from loopctl.space import Space
from loopctl.spec import Spec, load_spec, parse_spec, spec_hash


class BacktestError(LoopctlError):
    """The campaign and the measurements cannot be backtested together; says why."""


@dataclass(frozen=True)
class Scenario:
    name: str
    raw: Mapping[str, Any]  # the campaign, with the pool the backtest runs on
    source: str  # where relative paths in ``raw`` are resolved from
    objective: str
    sign: float  # +1: larger is better
    values: np.ndarray  # the objective of each pool row, in pool order
    replicates: int  # CSV rows folded into another row's mean
    unmatched: int  # CSV rows that are not candidates of the pool

    @property
    def n_pool(self) -> int:
        return len(self.values)

    @functools.cached_property
    def fingerprint(self) -> str:
        """Tells scenarios apart, so a worker can keep one's checked pool."""
        return spec_hash(self.raw) + self.source


def load_scenario(
    campaign: str | Path, data: str | Path, columns: Mapping[str, str] | None = None
) -> Scenario:
    """``columns`` maps campaign names (parameters, the objective) to CSV column names
    where they differ; the pool's own ``columns`` mapping applies too."""
    spec = load_spec(campaign)
    objective = spec.objectives[0]
    if spec.pool is not None:
        raw_columns = dict((spec.raw.get("pool") or {}).get("columns") or {})
    else:
        raw_columns = {}
    rename = {col: name for name, col in (raw_columns | dict(columns or {})).items()}
    rows = _read_csv(Path(data))
    if objective.name not in {rename.get(c, c) for c in rows[0]}:
        raise BacktestError(
            f"{data}: no column for the objective {objective.name!r}; "
            f"name one with --column {objective.name}=COLUMN"
        )
    space = Space(spec.space, spec.parameter_constraints)
    sums: dict[tuple[Any, ...], list[float]] = {}
    candidates: dict[tuple[Any, ...], dict[str, Any]] = {}
    for i, row in enumerate(rows):
        where = f"{data} row {i + 2}"
        named = {rename.get(k, k): v for k, v in row.items()}
        try:
            values = space.validate(space.unflat(named, where), where)
        except ValidationError as exc:
            raise BacktestError(str(exc)) from None
        y = _number(named.get(objective.name), f"{where}, column {objective.name!r}")
        if y is None:
            continue  # not measured
        key = space.key(values)
        sums.setdefault(key, []).append(y)
        candidates.setdefault(key, values)
    if not sums:
        raise BacktestError(f"{data}: no row has a measured {objective.name}")
    raw = dict(copy.deepcopy(spec.raw))
    if spec.pool is None:
        raw["pool"] = {"rows": [candidates[k] for k in sums]}
        pool_spec = parse_spec(raw, source=spec.source or str(campaign))
    else:
        pool_spec = spec
    return _match(spec, pool_spec, raw, sums, objective.name, objective.sign, str(campaign))


def _match(
    spec: Spec,
    pool_spec: Spec,
    raw: dict[str, Any],
    sums: dict[tuple[Any, ...], list[float]],
    objective: str,
    sign: float,
    campaign: str,
) -> Scenario:
    assert pool_spec.pool is not None
    space = Space(spec.space, spec.parameter_constraints)
    pool_keys = [space.key(r) for r in pool_spec.pool.rows]
    missing = [i for i, k in enumerate(pool_keys) if k not in sums]
    if missing:
        raise BacktestError(
            f"{len(missing)} of the {len(pool_keys)} pool candidates have no measurement "
            f"(the first: pool row {missing[0] + 1}, {dict(pool_spec.pool.rows[missing[0]])}); "
            "a backtest can only offer candidates whose outcome it knows"
        )
    values = np.array([float(np.mean(sums[k])) for k in pool_keys])
    replicates = sum(len(v) - 1 for v in sums.values())
    unmatched = len(set(sums) - set(pool_keys))
    if len(values) < 3:
        raise BacktestError(f"the pool has {len(values)} candidates; a backtest needs at least 3")
    return Scenario(
        spec.name, raw, spec.source or campaign, objective, sign, values, replicates, unmatched
    )


def _read_csv(path: Path) -> list[dict[str, Any]]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            rows = [{k: v for k, v in r.items() if k is not None} for r in csv.DictReader(f)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise BacktestError(f"cannot read {path}: {exc}") from None
    if not rows:
        raise BacktestError(f"{path}: no data rows")
    return [{k: _cell(v) for k, v in r.items()} for r in rows]


def _cell(text: str | None) -> Any:
    if text is None or not text.strip():
        return None
    try:
        return float(text)
    except ValueError:
        return text.strip()


def _number(v: Any, where: str) -> float | None:
    if v is None:
        return None
    if not isinstance(v, float) or not math.isfinite(v):
        raise BacktestError(f"{where}: must be a finite number, got {v!r}")
    return v
