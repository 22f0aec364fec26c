"""How well a sequence of measurements found a pool's best candidates (Liang et al. 2021).

Top%(i) is the share of the pool's top candidates (the best ``ceil(0.05 N)``)
measured by cycle i; EF(i) divides it by random sampling's expected Top%(i),
and AF(a) divides the cycles random sampling needs to reach Top% = a by the
cycles a strategy needs. Random sampling's figures are analytic, so a
comparison never depends on a lucky random run.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np

TOP_FRACTION = 0.05


def n_top(n_pool: int) -> int:
    return max(1, math.ceil(TOP_FRACTION * n_pool - 1e-9))


def top_set(values: np.ndarray, sign: float) -> set[int]:
    """Pool rows at least as good as the ``n_top``-th best.

    Without ties these are exactly the best ``n_top``. With ties at the edge every
    tied row counts (an ordinal score of four levels can tie hundreds of rows at the
    best), and Top% caps the hits at ``n_top``: finding any of the tied rows is
    finding a top candidate, whichever row order the file happened to have.
    """
    signed = sign * values
    edge = np.sort(signed)[::-1][n_top(len(values)) - 1]
    return {int(i) for i in np.nonzero(signed >= edge)[0]}


@functools.lru_cache(maxsize=64)
def random_top(n_pool: int, cycles: int, n_hits: int | None = None) -> np.ndarray:
    """Random sampling's expected Top%(1..cycles): E[min(X_i, M)] / M, X_i hypergeometric
    (N rows, ``n_hits`` of them top, i drawn). Without ties (``n_hits`` = M) this is
    i / N, the value of Liang et al.'s recursion (Eqs. 14-15), as the tests check."""
    from scipy.stats import hypergeom

    m = n_top(n_pool)
    k = m if n_hits is None else n_hits
    out = np.ones(cycles)
    for i in range(1, min(cycles, n_pool) + 1):
        x = np.arange(0, min(i, k) + 1)
        out[i - 1] = float(np.sum(np.minimum(x, m) * hypergeom.pmf(x, n_pool, k, i))) / m
    return out


def top_curve(order: Sequence[int], top: set[int], cycles: int, m: int | None = None) -> np.ndarray:
    """Top%(1..cycles) of one run, hits capped at ``m`` (default: all of ``top``); a run
    that stopped early keeps its last value."""
    m = len(top) if m is None else m
    hits = np.array([1.0 if i in top else 0.0 for i in order[:cycles]])
    curve = np.minimum(np.cumsum(hits), m) / m if len(hits) else np.zeros(0)
    out = np.full(cycles, curve[-1] if len(curve) else 0.0)
    out[: len(curve)] = curve
    return out


def regret_curve(order: Sequence[int], values: np.ndarray, sign: float, cycles: int) -> np.ndarray:
    """Simple regret (best in the pool minus best measured, >= 0) after each cycle."""
    best = float(np.max(sign * values))
    seen = sign * values[np.asarray(order[:cycles], dtype=int)]
    curve = best - np.maximum.accumulate(seen) if len(seen) else np.zeros(0)
    out = np.full(cycles, curve[-1] if len(curve) else np.nan)
    out[: len(curve)] = curve
    return out


def cycles_to(curve: np.ndarray, level: float) -> float:
    """First cycle (1-based) at which Top% reaches ``level``; inf if it never does."""
    reached = np.nonzero(curve >= level - 1e-12)[0]
    return float(reached[0] + 1) if len(reached) else math.inf


def random_cycles_to(n_pool: int, level: float, n_hits: int | None = None) -> float:
    return cycles_to(random_top(n_pool, n_pool, n_hits), level)
