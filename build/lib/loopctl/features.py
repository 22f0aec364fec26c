"""Element-property descriptors of a chemical formula, for models over pools of compounds.

A GP cannot compare "HoNiNO" with "TbCrO3" as text; it can compare the
fraction-weighted statistics of their elements' properties, which is how
composition-based materials models (Magpie and its descendants) see them.
"""

from __future__ import annotations

import warnings
from functools import lru_cache

import numpy as np

PROPERTIES = ("Z", "X", "atomic_radius", "row", "group", "atomic_mass", "mendeleev_no")
STATISTICS = ("mean", "std", "min", "max")
NAMES = tuple(f"{s}_{p}" for p in PROPERTIES for s in STATISTICS)


@lru_cache(maxsize=256)
def _element_row(symbol: str) -> tuple[float, ...]:
    from pymatgen.core.periodic_table import Element

    el = Element(symbol)
    values = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "no electronegativity for He": handled below
        for prop in PROPERTIES:
            v = getattr(el, prop, None)
            try:
                x = float(v) if v is not None else float("nan")
            except (TypeError, ValueError):
                x = float("nan")
            values.append(x)
    return tuple(values)


@lru_cache(maxsize=65536)
def formula_features(formula: str) -> tuple[float, ...]:
    """len(NAMES) numbers; a property an element lacks (He's electronegativity) is
    left out of that element's statistics rather than invented."""
    from pymatgen.core import Composition

    comp = Composition(formula).fractional_composition
    symbols = [str(el) for el in comp]
    weights = np.array([comp[el] for el in comp], dtype=float)
    table = np.array([_element_row(s) for s in symbols])  # elements x properties
    out: list[float] = []
    for j in range(len(PROPERTIES)):
        col = table[:, j]
        ok = np.isfinite(col)
        if not ok.any():
            out += [0.0] * len(STATISTICS)
            continue
        v, w = col[ok], weights[ok] / weights[ok].sum()
        mean = float(np.dot(w, v))
        std = float(np.sqrt(np.dot(w, (v - mean) ** 2)))
        out += [mean, std, float(v.min()), float(v.max())]
    return tuple(out)
