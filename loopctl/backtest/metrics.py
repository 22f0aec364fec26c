"""How well a sequence of measurements found a pool's best candidates (Liang et al. 2021).

Top%(i) is the share of the pool's top candidates (the best ``ceil(0.05 N)``)
measured by cycle i; EF(i) divides it by random sampling's expected Top%(i),
and AF(a) divides the cycles random sampling needs to reach Top% = a by the
cycles a strategy needs. Random sampling's figures are analytic, so a
comparison never depends on a lucky random run.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

TOP_FRACTION = 0.05


def n_top(n_pool: int) -> int:
    return max(1, math.ceil(TOP_FRACTION * n_pool - 1e-9))


def top_set(values: np.ndarray, sign: float) -> set[int]:
    """Pool rows among the best ``n_top``; ties at the edge go to the earlier row."""
    order = np.argsort(-sign * values, kind="stable")
    return {int(i) for i in order[: n_top(len(values))]}


def random_top(n_pool: int, cycles: int) -> np.ndarray:
    """Random sampling's expected Top%(1..cycles), by Liang et al.'s recursion (Eqs. 14-15):
    P(1) = M/N, P(i) = (M - sum_{n<i} P(n)) / (N - i + 1). It equals i/N, which the test
    of the recursion checks."""
    m = n_top(n_pool)
    found = np.zeros(cycles)
    total = 0.0
    for i in range(min(cycles, n_pool)):
        total += (m - total) / (n_pool - i)
        found[i] = total
    found[n_pool:] = m
    return found / m


def top_curve(order: Sequence[int], top: set[int], cycles: int) -> np.ndarray:
    """Top%(1..cycles) of one run; a run that stopped early keeps its last value."""
    hits = np.array([1.0 if i in top else 0.0 for i in order[:cycles]])
    curve = np.cumsum(hits) / len(top) if len(hits) else np.zeros(0)
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


def random_cycles_to(n_pool: int, level: float) -> float:
    return cycles_to(random_top(n_pool, n_pool), level)
