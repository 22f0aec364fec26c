"""Generated problems: randomly shifted, scaled and permuted standard test functions.

A benchmark that always shows the same function on the same box invites tuning to
it (the optimum of Ackley at the centre, which a centre point finds at once). Each
instance here draws, from a seed it does not choose by hand (a SeedSequence of a
fixed entropy and the family's and instance's numbers):

- a sub-box of the function's usual domain, 25-60 % of its width in each
  dimension, placed at random around the optimiser (so the optimum is inside and
  rarely central): BoTorch's, or for Michalewicz, which BoTorch gives none for at
  d = 5, one computed per coordinate (the function is separable);
- user-facing bounds: a random offset and width per dimension, in a random order;
- an outcome in random units: y = a * f + b, with a log-uniform in [0.1, 100].

``continuous(family, i)`` gives a range-only campaign and its function;
``grid_pool(family, i)`` a grid-sampled, noisy pool of it, one dimension integer,
as a lab's designed experiment with replicates would give (written as a CSV of
replicate rows for ``loopctl backtest``).
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ENTROPY = 20261203  # the date this generator was written: not chosen by looking at results

# family: (BoTorch class name, dimension)
FAMILIES: dict[str, tuple[str, int]] = {
    "hartmann6": ("Hartmann", 6),
    "ackley5": ("Ackley", 5),
    "levy4": ("Levy", 4),
    "styblinski4": ("StyblinskiTang", 4),
    "rosenbrock4": ("Rosenbrock", 4),
    "michalewicz5": ("Michalewicz", 5),
    "griewank6": ("Griewank", 6),
}


@dataclass(frozen=True)
class Instance:
    name: str
    family: str
    low: np.ndarray  # user bounds, per user dimension
    high: np.ndarray
    perm: np.ndarray  # user dimension i is function dimension perm[i]
    box_low: np.ndarray  # the sub-box of the function's domain, function order
    box_high: np.ndarray
    a: float
    b: float
    optimum: float  # in user units (minimisation)
    fn: Callable[[np.ndarray], np.ndarray]  # function-domain points -> raw values

    @property
    def dim(self) -> int:
        return len(self.low)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """User-unit points (n x d) -> outcome (minimise)."""
        u = (np.atleast_2d(x) - self.low) / (self.high - self.low)
        z = np.empty_like(u)
        z[:, self.perm] = u
        return self.a * self.fn(self.box_low + z * (self.box_high - self.box_low)) + self.b

    def space(self) -> list[dict[str, Any]]:
        return [
            {"name": f"x{i}", "type": "range", "bounds": [float(lo), float(hi)]}
            for i, (lo, hi) in enumerate(zip(self.low, self.high, strict=True))
        ]


def _function(cls_name: str, dim: int) -> tuple[Callable[[np.ndarray], np.ndarray], Any]:
    import torch
    from botorch.test_functions import synthetic

    f = getattr(synthetic, cls_name)(dim=dim)

    def fn(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return f.evaluate_true(torch.as_tensor(x, dtype=torch.float64)).numpy()

    return fn, f


def _michalewicz_term(i: int, x: np.ndarray) -> np.ndarray:
    """Coordinate i's (1-based) term of BoTorch's Michalewicz, m = 10."""
    return -np.sin(x) * np.sin(i * x**2 / math.pi) ** 20


@functools.cache
def michalewicz_optimiser(dim: int) -> tuple[float, ...]:
    """Michalewicz's minimiser on [0, pi]^dim, coordinate by coordinate.

    The function is a sum of one-dimensional terms, so its minimiser is the tuple of
    each term's: a dense grid on [0, pi] finds the right valley (they narrow as i
    grows: width ~ 1 / (i x)), a bounded scalar search between the grid neighbours of
    the best grid point refines it. Without it the generator had to keep the whole
    domain and its instances were permutations of one problem."""
    from scipy.optimize import minimize_scalar

    grid = np.linspace(0.0, math.pi, 200_001)
    step = grid[1] - grid[0]
    xs = []
    for i in range(1, dim + 1):
        k = int(np.argmin(_michalewicz_term(i, grid)))
        lo, hi = max(0.0, grid[k] - step), min(math.pi, grid[k] + step)
        res = minimize_scalar(
            lambda x, i=i: float(_michalewicz_term(i, np.array(x))),
            bounds=(lo, hi),
            method="bounded",
            options={"xatol": 1e-12},
        )
        xs.append(float(res.x))
    return tuple(xs)


def _optimiser(cls_name: str, dim: int, f: Any) -> np.ndarray:
    optimisers = getattr(f, "_optimizers", None)
    if optimisers:
        return np.array(optimisers[0], dtype=float)
    if cls_name == "Michalewicz":
        return np.array(michalewicz_optimiser(dim))
    raise ValueError(f"{cls_name} at d = {dim}: no known optimiser to place a sub-box around")


def continuous(family: str, index: int) -> Instance:
    cls_name, dim = FAMILIES[family]
    rng = np.random.default_rng(
        np.random.SeedSequence(ENTROPY, spawn_key=(list(FAMILIES).index(family), index))
    )
    fn, f = _function(cls_name, dim)
    bounds = np.array(f._bounds, dtype=float)
    lo, hi = bounds[:, 0], bounds[:, 1]
    xstar = _optimiser(cls_name, dim, f)
    width = rng.uniform(0.25, 0.6, dim) * (hi - lo)
    start = xstar - rng.uniform(0.05, 0.95, dim) * width  # optimiser inside, off centre
    start = np.clip(start, lo, hi - width)
    optimum = float(f.optimal_value)
    a = float(math.exp(rng.uniform(math.log(0.1), math.log(100.0))))
    b = float(rng.uniform(-100, 100))
    user_low = rng.uniform(-100, 100, dim)
    user_width = np.exp(rng.uniform(math.log(0.1), math.log(1000.0), dim))
    return Instance(
        name=f"{family}-{index}",
        family=family,
        low=user_low,
        high=user_low + user_width,
        perm=rng.permutation(dim),
        box_low=start,
        box_high=start + width,
        a=a,
        b=b,
        optimum=a * optimum + b,
        fn=fn,
    )


def grid_pool(
    family: str, index: int, size: int = 600, replicates: int = 3, noise: float = 0.1
) -> tuple[Instance, list[dict[str, Any]], list[float]]:
    """Candidates on a grid of 4-10 levels per dimension (the first user dimension holds
    integers), at most ``size`` of them drawn from the full grid, each measured
    ``replicates`` times with Gaussian noise of ``noise`` times the pool's spread."""
    inst = continuous(family, index)
    rng = np.random.default_rng(
        np.random.SeedSequence(ENTROPY + 1, spawn_key=(list(FAMILIES).index(family), index))
    )
    levels = [int(rng.integers(4, 11)) for _ in range(inst.dim)]
    first = int(rng.integers(0, 20))  # the integer dimension counts first, first + 1, ...
    low, high = inst.low.copy(), inst.high.copy()
    low[0], high[0] = first, first + levels[0] - 1
    inst = dataclasses.replace(inst, low=low, high=high)
    axes = [np.linspace(lo, hi, k) for lo, hi, k in zip(inst.low, inst.high, levels, strict=True)]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, inst.dim)
    if len(grid) > size:
        grid = grid[rng.choice(len(grid), size, replace=False)]
    clean = inst(grid)
    sd = noise * float(np.std(clean))
    rows, ys = [], []
    for x, y in zip(grid, clean, strict=True):
        for _ in range(replicates):
            rows.append({f"x{i}": (int(v) if i == 0 else float(v)) for i, v in enumerate(x)})
            ys.append(float(y + rng.normal(0, sd)))
    return inst, rows, ys


def write_grid_pool(family: str, index: int, folder: Path, noise: float = 0.1) -> tuple[Path, Path]:
    """A campaign file and a CSV of replicate measurements, for ``loopctl backtest``."""
    import yaml

    inst, rows, ys = grid_pool(family, index, noise=noise)
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{inst.name}-grid" + (f"-noise{noise:g}" if noise != 0.1 else "")
    data = folder / f"{name}.csv"
    with data.open("w", newline="") as f:
        w = csv.DictWriter(f, [*rows[0], "y"])
        w.writeheader()
        for r, y in zip(rows, ys, strict=True):
            w.writerow(r | {"y": y})
    space = inst.space()
    xs0 = [r["x0"] for r in rows]
    space[0] = {"name": "x0", "type": "integer", "bounds": [min(xs0), max(xs0)]}
    for i in range(1, inst.dim):
        col = [r[f"x{i}"] for r in rows]
        space[i]["bounds"] = [min(col), max(col)]
    campaign = folder / f"{name}.yaml"
    campaign.write_text(
        yaml.safe_dump(
            {
                "name": name,
                "seed": 0,
                "space": space,
                "objectives": [{"name": "y", "goal": "minimize"}],
                "budget": {"trials": 100},
            },
            sort_keys=False,
        )
    )
    return campaign, data


def composition_plate(
    index: int, elements: int = 6, step: float = 0.1, noise: float = 0.1
) -> tuple[list[dict[str, float]], list[float]]:
    """A catalyst plate: every composition of ``elements`` elements on a ``step`` grid,
    with a made-up property to minimise: a random quadratic in the fractions (pairwise
    synergies) and three Gaussian wells of random depth and width, measured twice
    with noise of ``noise`` times the plate's spread. Returns (rows, values)."""
    rng = np.random.default_rng(np.random.SeedSequence(ENTROPY + 2, spawn_key=(elements, index)))
    names = ["Cu", "Zn", "Sn", "Ti", "V", "Cr", "Mo", "W"][:elements]
    k = round(1 / step)
    grid = (
        np.array(
            [c for c in itertools.product(range(k + 1), repeat=elements) if sum(c) == k],
            dtype=float,
        )
        / k
    )
    quad = rng.normal(size=(elements, elements))
    quad = (quad + quad.T) / 2
    centres = rng.dirichlet(np.ones(elements), size=3)
    widths = rng.uniform(0.1, 0.3, size=3)
    depths = rng.uniform(1.0, 3.0, size=3)
    clean = np.einsum("ni,ij,nj->n", grid, quad, grid)
    for c, w, d in zip(centres, widths, depths, strict=True):
        clean -= d * np.exp(-np.sum((grid - c) ** 2, axis=1) / (2 * w**2))
    sd = noise * float(np.std(clean))
    rows: list[dict[str, float]] = []
    ys: list[float] = []
    for x, y in zip(grid, clean, strict=True):
        for _ in range(2):
            rows.append({n: round(float(v), 6) for n, v in zip(names, x, strict=True)})
            ys.append(float(y + rng.normal(0, sd)))
    return rows, ys


def write_composition_plate(index: int, folder: Path, noise: float = 0.1) -> tuple[Path, Path]:
    import yaml

    rows, ys = composition_plate(index, noise=noise)
    folder.mkdir(parents=True, exist_ok=True)
    name = f"plate6-{index}" + (f"-noise{noise:g}" if noise != 0.1 else "")
    data = folder / f"{name}.csv"
    with data.open("w", newline="") as f:
        w = csv.DictWriter(f, [*rows[0], "y"])
        w.writeheader()
        for r, y in zip(rows, ys, strict=True):
            w.writerow(r | {"y": y})
    campaign = folder / f"{name}.yaml"
    spec = {
        "name": name,
        "seed": 0,
        "space": [{"name": "plate", "type": "composition", "elements": list(rows[0])}],
        "objectives": [{"name": "y", "goal": "minimize"}],
        "budget": {"trials": 100},
    }
    campaign.write_text(yaml.safe_dump(spec, sort_keys=False))
    return campaign, data
