"""Pareto fronts and hypervolumes, every objective minimised: the one copy loopctl, the
benchmarks and the tests use.

Plain Python, importing nothing at all: `loopctl status` lists the Pareto set and must not
load numpy (a fifth of a second; tests/test_cli.py checks it), and the fronts here are of
measured trials, hundreds of points, where a sort and a sweep in Python take milliseconds.
Callers holding numpy arrays pass them as they are (rows are iterated) and callers that
maximise negate first. The strategies' own domination tests stay in torch on BoTorch's
tensors (``is_non_dominated``), where they are part of the acquisition machinery.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, TypeAlias

if TYPE_CHECKING:  # for the annotations only: numpy is never imported here
    import numpy as np

Point: TypeAlias = "Sequence[float] | np.ndarray"
Points: TypeAlias = "Sequence[Point] | np.ndarray"


def dominates(a: Point, b: Point) -> bool:
    """Whether ``a`` beats ``b``: no worse on every coordinate and better on one."""
    return all(x <= y for x, y in zip(a, b, strict=True)) and any(
        x < y for x, y in zip(a, b, strict=True)
    )


def non_dominated(points: Points) -> list[int]:
    """Indices (ascending) of the points no other point beats; ties are all kept.

    In lexicographic order a point can only be beaten by one before it, and anything that
    beats it is beaten by, or is, a point already on the front, so each point is compared
    with the front alone: O(n log n + n * front) rather than all pairs.
    """
    rows = [tuple(float(x) for x in p) for p in points]
    front: list[int] = []
    for i in sorted(range(len(rows)), key=lambda i: rows[i]):
        if not any(dominates(rows[j], rows[i]) for j in front):
            front.append(i)
    return sorted(front)


def pareto_mask(points: Points) -> list[bool]:
    """For each point, whether it is on the front (see :func:`non_dominated`)."""
    on = set(non_dominated(points))
    return [i in on for i in range(len(points))]


def hypervolume_2d(points: Iterable[Point] | Points, ref: Point) -> float:
    """Exact area dominated by ``points`` and bounded by ``ref`` (two objectives).

    One sort and a sweep: in increasing first objective, each point that improves on the
    best second objective so far adds the strip between them. Points not strictly better
    than ``ref`` on both objectives add nothing.
    """
    r0, r1 = float(ref[0]), float(ref[1])
    inside = sorted((float(a), float(b)) for a, b in points if a < r0 and b < r1)
    total, best = 0.0, r1
    for a, b in inside:
        if b < best:
            total += (r0 - a) * (best - b)
            best = b
    return total


def hypervolume(points: Iterable[Point] | Points, ref: Point) -> float:
    """Exact volume dominated by ``points`` and bounded by ``ref``, in any dimension.

    Slicing along the last objective (the "hypervolume by slicing objectives" recursion):
    between consecutive values of the last objective, the volume is the slab's depth times
    the (d-1)-dimensional hypervolume of the points below it, ending in the 2-d sweep. It
    costs about n^(d-1) for n points on the front, which is nothing for measured fronts in
    the three or four objectives loopctl proposes for (beyond four it switches to ParEGO);
    large fronts in many objectives want BoTorch's box decompositions instead.
    """
    r = tuple(float(x) for x in ref)
    inside = [
        tuple(float(x) for x in p)
        for p in points
        if all(x < rx for x, rx in zip(p, r, strict=True))
    ]
    return _slice(inside, r)


def _slice(points: list[tuple[float, ...]], ref: tuple[float, ...]) -> float:
    if not points:
        return 0.0
    if len(ref) == 1:
        return ref[0] - min(p[0] for p in points)
    if len(ref) == 2:
        return hypervolume_2d(points, ref)
    front = [points[i] for i in non_dominated(points)]
    front.sort(key=lambda p: p[-1])
    total = 0.0
    for i, p in enumerate(front):
        upper = front[i + 1][-1] if i + 1 < len(front) else ref[-1]
        if upper > p[-1]:
            below = [q[:-1] for q in front[: i + 1]]
            total += (upper - p[-1]) * _slice(below, ref[:-1])
    return total
