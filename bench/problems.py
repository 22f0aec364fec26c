"""Benchmark problems for bench/regret.py: a campaign spec, an evaluation, and what optimal means.

Single-objective problems report simple regret against the known optimum (EMT:
against the best value any run found, as its optimum is not known); two-objective
problems report the hypervolume gap to the true front; pools report how many of the
top 5 % candidates were found (Liang et al. 2021).

``gen-<family>-<index>`` (e.g. ``gen-hartmann6-3``) is instance ``index`` of a family of
bench/generated.py: a randomly shifted, scaled and permuted standard test function, its
outcome in random units y = a * f + b. Its budget is GEN_TRIALS_PER_DIM (10) trials per
dimension; its regret is reported in the function's own units, (best - optimum) / a, so
that instances of a family can be pooled and compared (on the log scale this is the raw
log10 regret minus log10 a, the same shift for every method on an instance); the "trials
to target" target is 1 % of the median regret of 1,024 Sobol points of the instance's box.
"""

from __future__ import annotations

import csv
import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from loopctl.pareto import hypervolume_2d

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

Outcomes = dict[str, float]


@dataclass
class Problem:
    name: str
    kind: str  # single | multi | pool | fail
    space: list[dict[str, Any]]
    objectives: list[dict[str, Any]]
    evaluate: Callable[[dict[str, Any]], Outcomes]
    budget: int
    optimum: float | None = None  # single: best value; multi: hypervolume of the true front
    ref: list[float] = field(default_factory=list)  # multi: reference point (minimisation)
    target: float = 0.1  # regret (or relative HV gap) counted as "reached"
    pool: dict[str, Any] | None = None
    pool_values: dict[tuple[float, ...], float] = field(default_factory=dict)
    fails: Callable[[dict[str, Any]], bool] | None = None
    scale: float = 1.0  # single: regret is reported divided by it (gen-*: the instance's a)
    family: str | None = None  # gen-*: the family its instances are pooled under


def _branin(x1: float, x2: float) -> float:
    return (
        (x2 - 5.1 / (4 * math.pi**2) * x1**2 + 5 / math.pi * x1 - 6) ** 2
        + 10 * (1 - 1 / (8 * math.pi)) * math.cos(x1)
        + 10
    )


def _currin(u: float, v: float) -> float:
    factor = 1 - math.exp(-1 / (2 * v)) if v > 0 else 1.0
    return (
        factor
        * (2300 * u**3 + 1900 * u**2 + 2092 * u + 60)
        / (100 * u**3 + 500 * u**2 + 4 * u + 20)
    )


def _branin_currin(u: float, v: float) -> tuple[float, float]:
    return _branin(15 * u - 5, 15 * v), _currin(u, v)


def _box(names: list[str], low: float, high: float) -> list[dict[str, Any]]:
    return [{"name": n, "type": "range", "bounds": [low, high]} for n in names]


def _xs(p: dict[str, Any], d: int) -> np.ndarray:
    return np.array([p[f"x{i}"] for i in range(d)], dtype=float)


def _hartmann6(p: dict[str, Any]) -> Outcomes:
    import torch
    from botorch.test_functions import Hartmann

    return {"y": float(Hartmann(dim=6)(torch.tensor(_xs(p, 6)).unsqueeze(0))[0])}  # min -3.32237


def _ackley6(p: dict[str, Any]) -> Outcomes:
    x = _xs(p, 6)
    a = -20 * math.exp(-0.2 * math.sqrt(float((x**2).mean())))
    return {"y": a - math.exp(float(np.cos(2 * math.pi * x).mean())) + 20 + math.e}


def _dtlz2(p: dict[str, Any]) -> Outcomes:
    x = _xs(p, 6)
    g = float(((x[1:] - 0.5) ** 2).sum())
    return {
        "a": (1 + g) * math.cos(x[0] * math.pi / 2),
        "b": (1 + g) * math.sin(x[0] * math.pi / 2),
    }


SOLVENTS = {
    "water": (1.0, 0.0, 1.0, 0.0),
    "ethanol": (1.3, -15.0, 0.8, 0.5),
    "dmf": (0.8, 25.0, 1.2, 2.0),
}


def _mixed(p: dict[str, Any]) -> Outcomes:
    f1, f2 = _branin_currin(p["u"], p["v"])
    s1, o1, s2, o2 = SOLVENTS[p["solvent"]]
    return {"a": s1 * f1 + o1, "b": s2 * f2 + o2}


@cache
def _true_hv(name: str) -> float:
    """Hypervolume of the true front by a dense grid (2-d inputs) or in closed form."""
    if name == "dtlz2":
        return 1.1 * 1.1 - math.pi / 4  # quarter circle of radius 1 under (1.1, 1.1)
    g = np.linspace(0, 1, 401)
    u, v = np.meshgrid(g, g)
    pts = []
    for solvent in SOLVENTS if name == "mixed_mo" else ["water"]:
        for a, b in zip(u.ravel(), v.ravel(), strict=True):
            o = _mixed({"u": a, "v": b, "solvent": solvent})
            pts.append((o["a"], o["b"]))
    return hypervolume_2d(pts, PROBLEM_REFS[name])


PROBLEM_REFS = {"branincurrin": [18.0, 6.0], "mixed_mo": [18.0, 6.0], "dtlz2": [1.1, 1.1]}


def hypervolume(name: str, points: np.ndarray) -> float:
    return hypervolume_2d(points, PROBLEM_REFS[name])


def _liang(folder: str, file: str, objective: str, goal: str) -> Problem:
    path = DATA / folder / file
    with path.open(newline="", encoding="utf-8-sig") as f:
        rows = list(csv.DictReader(f))
    columns = [c for c in rows[0] if c != objective]
    names = [f"x{i}" for i in range(len(columns))]
    values = np.array([[float(r[c]) for c in columns] for r in rows])
    ys = [float(r[objective]) for r in rows]
    space = [
        {
            "name": n,
            "type": "range",
            "bounds": [float(values[:, i].min()), float(values[:, i].max())],
        }
        for i, n in enumerate(names)
    ]
    lookup = {tuple(float(v) for v in row): y for row, y in zip(values, ys, strict=True)}

    def evaluate(p: dict[str, Any]) -> Outcomes:
        return {"y": lookup[tuple(float(p[n]) for n in names)]}

    return Problem(
        name=folder,
        kind="pool",
        space=space,
        objectives=[{"name": "y", "goal": goal}],
        evaluate=evaluate,
        budget=60,
        pool={"file": str(path), "columns": dict(zip(names, columns, strict=True))},
        pool_values=lookup,
    )


def _emt(p: dict[str, Any]) -> Outcomes:
    from loopctl.drivers.oracle_models import emt_mixing_energy

    return {"y": emt_mixing_energy(p["alloy"])}


def problems() -> dict[str, Problem]:
    xy = [
        {"name": "x1", "type": "range", "bounds": [-5, 10]},
        {"name": "x2", "type": "range", "bounds": [0, 15]},
    ]
    minimise = [{"name": "y", "goal": "minimize"}]
    two = [{"name": "a", "goal": "minimize"}, {"name": "b", "goal": "minimize"}]
    uv = _box(["u", "v"], 0, 1)
    out = {
        "branin": Problem(
            "branin",
            "single",
            xy,
            minimise,
            lambda p: {"y": _branin(p["x1"], p["x2"])},
            25,
            0.397887,
        ),
        "hartmann6": Problem(
            "hartmann6",
            "single",
            _box([f"x{i}" for i in range(6)], 0, 1),
            minimise,
            _hartmann6,
            35,
            -3.32237,
        ),
        # [-5, 10]^6: the optimum (0) is not at the centre of the box, which Ax samples first
        "ackley6": Problem(
            "ackley6",
            "single",
            _box([f"x{i}" for i in range(6)], -5, 10),
            minimise,
            _ackley6,
            35,
            0.0,
            target=1.0,
        ),
        "emt_alloy": Problem(
            "emt_alloy",
            "single",
            [{"name": "alloy", "type": "composition", "elements": ["Cu", "Ag", "Au", "Pd", "Pt"]}],
            minimise,
            _emt,
            20,
            None,
            target=0.005,
        ),
        "branincurrin": Problem(
            "branincurrin",
            "multi",
            uv,
            two,
            lambda p: dict(zip("ab", _branin_currin(p["u"], p["v"]), strict=True)),
            25,
        ),
        "dtlz2": Problem(
            "dtlz2", "multi", _box([f"x{i}" for i in range(6)], 0, 1), two, _dtlz2, 30
        ),
        "mixed_mo": Problem(
            "mixed_mo",
            "multi",
            [*uv, {"name": "solvent", "type": "choice", "values": list(SOLVENTS)}],
            two,
            _mixed,
            25,
        ),
        "branin_fail": Problem(
            "branin_fail",
            "fail",
            xy,
            minimise,
            lambda p: {"y": _branin(p["x1"], p["x2"])},
            25,
            0.397887,
            fails=lambda p: p["x1"] < 0,  # a hidden region holding one of the three optima
        ),
    }
    for key, (folder, file, objective, goal) in {
        "liang_p3ht": (
            "liang2021_p3ht_cnt",
            "P3HT_pool.csv",
            "Conductivity (measured) (S/cm)",
            "maximize",
        ),
        "liang_perovskite": (
            "liang2021_perovskite",
            "Perovskite_pool.csv",
            "Instability index",
            "minimize",
        ),
        "liang_agnp": ("liang2021_agnp", "AgNP_pool.csv", "loss", "minimize"),
        "liang_autoam": ("liang2021_autoam", "AutoAM_pool.csv", "Score", "maximize"),
    }.items():
        if (DATA / folder / file).is_file():
            out[key] = _liang(folder, file, objective, goal)
            out[key].name = key
    for p in out.values():
        if p.kind == "multi":
            p.ref = PROBLEM_REFS[p.name]
            # both tools are given the reference point the hypervolume is scored against,
            # as objective thresholds, as BoTorch's and Ax's own benchmarks do; inferred
            # from the data instead, it lay at a = 210 on mixed_mo (scored up to 18), and
            # both tools spent their budgets on a stretch of the front that scores nothing
            p.objectives = [o | {"threshold": r} for o, r in zip(p.objectives, p.ref, strict=True)]
            # BraninCurrin's front in closed form is not known; 59.3601 is BoTorch's figure
            p.optimum = 59.36011874867746 if p.name == "branincurrin" else _true_hv(p.name)
    return out


GEN_TRIALS_PER_DIM = 10


def generated_names(token: str, instances: list[int]) -> list[str]:
    """``gen`` -> every family's instances; ``gen-<family>`` -> that family's; else ``token``."""
    from generated import FAMILIES

    if token == "gen":
        return [f"gen-{f}-{i}" for f in FAMILIES for i in instances]
    if token.startswith("gen-") and token.removeprefix("gen-") in FAMILIES:
        return [f"{token}-{i}" for i in instances]
    return [token]


@cache
def generated_problem(name: str) -> Problem:
    """``gen-<family>-<index>``: instance ``index`` of bench/generated.py's ``family``."""
    from generated import continuous
    from scipy.stats import qmc

    family, _, index = name.removeprefix("gen-").rpartition("-")
    inst = continuous(family, int(index))

    def evaluate(p: dict[str, Any]) -> Outcomes:
        return {"y": float(inst(_xs(p, inst.dim)[None, :])[0])}

    u = qmc.Sobol(inst.dim, scramble=True, seed=0).random(1024)
    typical = float(np.median(inst(inst.low + u * (inst.high - inst.low)) - inst.optimum))
    return Problem(
        name,
        "single",
        inst.space(),
        [{"name": "y", "goal": "minimize"}],
        evaluate,
        GEN_TRIALS_PER_DIM * inst.dim,
        inst.optimum,
        target=0.01 * typical / inst.a,
        scale=inst.a,
        family=f"gen-{family}",
    )


def problem(name: str) -> Problem:
    """A problem of :func:`problems` or a generated instance, by name (a fresh copy)."""
    if name.startswith("gen-"):
        return dataclasses.replace(generated_problem(name))
    return problems()[name]
