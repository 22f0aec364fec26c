"""Parameter values as people read and write them: formulas, flat table columns, numbers.

Kept apart from loopctl.space (numpy's encodings) so that the commands that only read a
campaign -- `status`, `export`, `validate` -- start without importing numpy or pymatgen:
those two made each of them take over half a second.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from loopctl.errors import ValidationError
from loopctl.spec_types import CompositionParam, Parameter


def formula(fractions: Mapping[str, float], digits: int | None = None) -> str:
    """The normalised formula of a composition, e.g. ``Cu0.25 Pd0.75``, in the mapping's
    element order; ``digits`` rounds the amounts for display. Without it the amounts read as
    pymatgen writes them (8 decimals, whole numbers bare), which `loopctl import` parses back.
    """
    kept = {e: f for e, f in fractions.items() if f > 1e-12}
    total = sum(kept.values())
    parts = []
    for el, f in kept.items():
        amount = f / total
        if digits is not None:
            if round(amount, digits):
                parts.append(f"{el}{round(amount, digits):g}")
        elif math.isclose(amount, round(amount), abs_tol=1e-8, rel_tol=0):
            parts.append(f"{el}{round(amount)}")
        else:
            parts.append(f"{el}{round(amount, 8)}")
    return " ".join(parts)


def flat(params: Sequence[Parameter], values: Mapping[str, Any]) -> dict[str, Any]:
    """One column per scalar, for exports: a composition becomes its formula (in the
    campaign's element order) and a ``name.El`` column per element."""
    row: dict[str, Any] = {}
    for p in params:
        v = values.get(p.name)
        if isinstance(p, CompositionParam) and isinstance(v, Mapping):
            row[p.name] = formula({e: v[e] for e in p.elements if e in v})
            for e in p.elements:
                row[f"{p.name}.{e}"] = v.get(e)
        else:
            row[p.name] = v
    return row


def finite_number(v: Any, where: str) -> float:
    """A real number or a ValidationError naming ``where``: NaN and infinity never get in."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValidationError(f"{where}: must be a number, got {v!r}")
    x = float(v)
    if not math.isfinite(x):
        raise ValidationError(f"{where}: must be a finite number, got {x}")
    return x
