"""The computations behind the simulated DFT oracle, kept free of sockets and the controller.

Three kinds of oracle turn a parameter assignment into objective values:

* ``emt``: the mixing energy of an fcc alloy, really computed with ASE's EMT potential
  on a pymatgen-built supercell, so a materials campaign has a physical (if cheap) answer;
* ``function``: a standard optimisation benchmark with a known minimum, for testing strategies;
* ``table``: look-up in a CSV of previously measured or computed results.

Everything that can be checked without evaluating is checked in :func:`build_oracle`, so a
campaign the oracle cannot serve is refused when the driver starts, not trial by trial.
"""

from __future__ import annotations

import csv
import hashlib
import math
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from loopctl.errors import LoopctlError


class Outcomes(dict[str, float]):
    """An oracle's objective values, with what it wants recorded beside them (``metadata``,
    e.g. the composition the EMT cell could actually hold). A dict, so that callers wanting
    only the values need not know about the rest."""

    def __init__(
        self, values: Mapping[str, float], metadata: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(values)
        self.metadata: dict[str, Any] = dict(metadata or {})


Oracle = Callable[[dict[str, Any]], dict[str, float]]

KINDS = ("emt", "chgnet", "function", "table")
EMT_ELEMENTS = ("Al", "Cu", "Ag", "Au", "Ni", "Pd", "Pt")  # the fcc metals EMT has parameters for
SUPERCELL_RANGE = (1, 4)  # 4 to 256 atoms; beyond that one evaluation stops being cheap
RELAX_RANGE = (0.97, 1.03)  # uniform scale around Vegard's law: alloys deviate by a few %
RELAX_XATOL = 1e-5  # energy error ~ k * xatol**2 ~ 1e-8 eV/atom, far below mixing energies
TABLE_RTOL = 1e-9
TABLE_ATOL = 1e-12  # fractions of 0 must still match 1e-17 from a round trip
COMMON_OPTIONS = frozenset({"base_dir"})
KNOWN_OPTIONS: dict[str, frozenset[str]] = {
    "emt": frozenset({"supercell", "relax"}),
    # read by loopctl.drivers.chgnet_oracle; listed here so that checking them does not import it
    "chgnet": frozenset(
        {"model", "steps", "fmax", "supercell", "lattice", "hull_entries", "hull_formulas"}
    ),
    "function": frozenset(),
    "table": frozenset({"nearest"}),
}


class OracleConfigError(LoopctlError):
    """The campaign asks the oracle for something it cannot evaluate; the message says what."""


@dataclass(frozen=True)
class _Request:
    """The settings one builder needs, bundled so every builder has the same signature."""

    objectives: list[str]
    parameters: list[dict[str, Any]]
    function: str | None
    table: str | None
    options: dict[str, Any]
    warm: bool = True  # False: the caller only checks; no work for later trials in advance


def build_oracle(
    kind: str,
    *,
    objectives: list[str],
    parameters: list[dict[str, Any]],
    function: str | None = None,
    table: str | None = None,
    noise: float = 0.0,
    seed: int = 0,
    options: dict[str, Any] | None = None,
    warm: bool = True,
) -> Oracle:
    """Return ``f(assignment) -> {objective: value}``, or raise :class:`OracleConfigError`.
    ``warm=False`` skips what a builder starts in the background for the first trial."""
    builder = _BUILDERS.get(kind)
    if builder is None:
        raise OracleConfigError(f"unknown oracle kind {kind!r}; known kinds: {', '.join(KINDS)}")
    opts = dict(options or {})
    _check_options(kind, opts)
    if not isinstance(noise, (int, float)) or not math.isfinite(noise) or noise < 0:
        raise OracleConfigError(f"oracle noise must be a finite number >= 0, got {noise!r}")
    req = _Request(
        _objective_names(objectives), _parameter_dicts(parameters), function, table, opts, warm
    )
    fn = builder(req)
    return _with_noise(fn, float(noise), seed) if noise > 0 else fn


def _check_options(kind: str, options: Mapping[str, Any]) -> None:
    """Unknown options are refused: a typo (``supercel``) would otherwise be silently ignored."""
    known = KNOWN_OPTIONS[kind] | COMMON_OPTIONS
    unknown = sorted(str(k) for k in options if k not in known)
    if unknown:
        raise OracleConfigError(
            f"unknown option {unknown[0]!r} for the {kind} oracle; "
            f"known options: {', '.join(sorted(known))}"
        )


def _objective_names(objectives: Sequence[Any]) -> list[str]:
    """Accept names or objective mappings, since both shapes travel through the settings."""
    names = [o.get("name") if isinstance(o, Mapping) else o for o in objectives]
    if not names:
        raise OracleConfigError(
            "the campaign has no objectives, so the oracle has nothing to report"
        )
    bad = [n for n in names if not isinstance(n, str) or not n]
    if bad:
        raise OracleConfigError(f"objective names must be text, got {bad[0]!r}")
    return [str(n) for n in names]


def _parameter_dicts(parameters: Sequence[Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i, p in enumerate(parameters):
        if not isinstance(p, Mapping) or not isinstance(p.get("name"), str) or "type" not in p:
            raise OracleConfigError(f"parameter {i} is not a mapping with a name and a type: {p!r}")
        out.append(dict(p))
    if not out:
        raise OracleConfigError("the campaign has no parameters, so the oracle has no inputs")
    return out


def _single_objective(kind: str, objectives: list[str]) -> str:
    """emt and function compute one number; any further objective could never be reported."""
    if len(objectives) != 1:
        raise OracleConfigError(
            f"the {kind} oracle computes a single value, but the campaign has "
            f"{len(objectives)} objectives ({', '.join(objectives)})"
        )
    return objectives[0]


def _with_noise(fn: Oracle, sd: float, seed: int) -> Oracle:
    """One generator per oracle so a seeded campaign sees the same noise sequence every run."""
    rng = np.random.default_rng(seed)
    lock = threading.Lock()  # a driver evaluates trials in threads; Generator is not thread-safe

    def noisy(values: dict[str, Any]) -> dict[str, float]:
        clean = fn(values)
        with lock:
            draws = rng.normal(0.0, sd, size=len(clean))
        noisy = {k: float(v + d) for (k, v), d in zip(clean.items(), draws, strict=True)}
        return Outcomes(noisy, getattr(clean, "metadata", None))

    return noisy


# ---------------------------------------------------------------- benchmark functions


def branin(x: np.ndarray) -> float:
    """Branin-Hoo on x1 in [-5, 10], x2 in [0, 15]; three global minima of 0.397887."""
    x1, x2 = float(x[0]), float(x[1])
    b, c, t = 5.1 / (4 * math.pi**2), 5 / math.pi, 1 / (8 * math.pi)
    return (x2 - b * x1**2 + c * x1 - 6) ** 2 + 10 * (1 - t) * math.cos(x1) + 10


_H6_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])
_H6_A = np.array(
    [
        [10, 3, 17, 3.5, 1.7, 8],
        [0.05, 10, 17, 0.1, 8, 14],
        [3, 3.5, 1.7, 10, 17, 8],
        [17, 8, 0.05, 10, 0.1, 14],
    ]
)
_H6_P = 1e-4 * np.array(
    [
        [1312, 1696, 5569, 124, 8283, 5886],
        [2329, 4135, 8307, 3736, 1004, 9991],
        [2348, 1451, 3522, 2883, 3047, 6650],
        [4047, 8828, 8732, 5743, 1091, 381],
    ]
)


def hartmann6(x: np.ndarray) -> float:
    """Hartmann 6-d on [0, 1]^6; global minimum -3.32237, a hard multimodal test."""
    inner = np.sum(_H6_A * (np.asarray(x, dtype=float) - _H6_P) ** 2, axis=1)
    return float(-np.sum(_H6_ALPHA * np.exp(-inner)))


def ackley(x: np.ndarray) -> float:
    """Ackley in any dimension; minimum 0 at the origin inside many local minima."""
    x = np.asarray(x, dtype=float)
    d = len(x)
    a = -20 * math.exp(-0.2 * math.sqrt(float(np.sum(x**2)) / d))
    return a - math.exp(float(np.sum(np.cos(2 * math.pi * x))) / d) + 20 + math.e


def sphere(x: np.ndarray) -> float:
    """Sum of squares: the easiest case, a check that a strategy converges at all."""
    return float(np.sum(np.asarray(x, dtype=float) ** 2))


def rosenbrock(x: np.ndarray) -> float:
    """Rosenbrock valley; minimum 0 at (1, ..., 1) at the end of a long flat curve."""
    x = np.asarray(x, dtype=float)
    return float(np.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2))


@dataclass(frozen=True)
class _Benchmark:
    fn: Callable[[np.ndarray], float]
    dim: int | None  # exact dimension, or None for any dimension >= min_dim
    min_dim: int = 1


FUNCTIONS: dict[str, _Benchmark] = {
    "ackley": _Benchmark(ackley, None),
    "branin": _Benchmark(branin, 2),
    "hartmann6": _Benchmark(hartmann6, 6),
    "rosenbrock": _Benchmark(rosenbrock, None, 2),
    "sphere": _Benchmark(sphere, None),
}


def _build_function(req: _Request) -> Oracle:
    bench, name = _benchmark(req.function)
    objective = _single_objective("function", req.objectives)
    inputs = [_numeric_input(p, name) for p in req.parameters]
    _check_dimension(name, bench, [p["name"] for p in req.parameters])

    def evaluate(values: dict[str, Any]) -> dict[str, float]:
        x = np.array([read(values) for read in inputs], dtype=float)
        return {objective: float(bench.fn(x))}

    return evaluate


def _benchmark(function: str | None) -> tuple[_Benchmark, str]:
    known = ", ".join(sorted(FUNCTIONS))
    if not function:
        raise OracleConfigError(f"the function oracle needs `function:`, one of {known}")
    name = str(function).lower()
    if name not in FUNCTIONS:
        raise OracleConfigError(f"unknown function {function!r}; known functions: {known}")
    return FUNCTIONS[name], name


def _check_dimension(name: str, bench: _Benchmark, params: list[str]) -> None:
    d = len(params)
    listed = ", ".join(params)
    if bench.dim is not None and d != bench.dim:
        raise OracleConfigError(
            f"function {name!r} takes {bench.dim} parameters, but the campaign has {d} ({listed})"
        )
    if d < bench.min_dim:
        raise OracleConfigError(
            f"function {name!r} needs at least {bench.min_dim} parameters, "
            f"but the campaign has {d} ({listed})"
        )


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _numeric_input(p: Mapping[str, Any], function: str) -> Callable[[Mapping[str, Any]], float]:
    """How to read one benchmark coordinate; refuses parameters that are not numbers."""
    name, ptype = p["name"], p["type"]
    fallback: float | None = None
    if ptype == "fixed" and _is_number(p.get("value")):
        fallback = float(p["value"])  # a fixed value may be left out of the assignment
    elif ptype == "choice" and all(_is_number(v) for v in p.get("values") or ["?"]):
        pass
    elif ptype not in ("range", "integer"):
        raise OracleConfigError(
            f"function {function!r} needs numeric parameters, "
            f"but {name!r} is a {ptype} parameter with non-numeric values"
        )

    def read(values: Mapping[str, Any]) -> float:
        v = values.get(name, fallback)
        if v is None:
            raise ValueError(f"parameter {name!r} is missing from the assignment")
        return float(v)

    return read


# ---------------------------------------------------------------- EMT alloy mixing energy


def site_counts(fractions: Sequence[float], n_sites: int) -> list[int]:
    """Largest-remainder rounding: counts sum to ``n_sites`` and each is within 1 of x*N."""
    x = np.asarray(fractions, dtype=float)
    if x.ndim != 1 or not np.all(np.isfinite(x)) or np.any(x < 0) or x.sum() <= 0:
        raise ValueError(f"fractions must be finite, >= 0 and not all 0, got {list(fractions)}")
    quotas = x / x.sum() * n_sites
    counts = np.floor(quotas).astype(int)
    rest = quotas - counts
    # ties go to the larger fraction, then to the earlier element: deterministic
    order = sorted(range(len(x)), key=lambda i: (-rest[i], -quotas[i], i))
    for i in order[: n_sites - int(counts.sum())]:
        counts[i] += 1
    return [int(c) for c in counts]


def _species_order(counts: Mapping[str, int]) -> list[str]:
    """A shuffle seeded by the composition alone, so equal compositions give equal structures.

    sha256 rather than ``hash()``: Python salts string hashes per process.
    """
    present = sorted((el, n) for el, n in counts.items() if n > 0)
    key = ",".join(f"{el}{n}" for el, n in present).encode()
    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(key).digest()[:8], "little"))
    species = [el for el, n in present for _ in range(n)]
    return [species[i] for i in rng.permutation(len(species))]


@lru_cache(maxsize=16)
def cubic_frac_coords(space_group: str, n: int) -> np.ndarray:
    """Site positions of the n x n x n conventional cubic supercell of a one-site lattice
    (``Fm-3m`` fcc, ``Im-3m`` bcc), built once per lattice and size; read-only."""
    from pymatgen.core import Lattice, Structure

    cell = Structure.from_spacegroup(space_group, Lattice.cubic(1.0), ["Cu"], [[0, 0, 0]])
    cell.make_supercell([n, n, n])
    coords = np.array(cell.frac_coords)
    coords.setflags(write=False)
    return coords


def _fcc_frac_coords(n: int) -> np.ndarray:
    return cubic_frac_coords("Fm-3m", n)


def fcc_structure(species: Sequence[str], a: float, n: int) -> Any:
    """A pymatgen Structure: the fcc supercell with lattice constant ``a``, sites as given."""
    from pymatgen.core import Lattice, Structure

    coords = _fcc_frac_coords(n)
    if len(species) != len(coords):
        raise ValueError(f"{len(species)} species for {len(coords)} sites of a {n}x{n}x{n} cell")
    return Structure(Lattice.cubic(a * n), list(species), coords)


def _emt_atoms(species: Sequence[str], a: float, n: int) -> Any:
    from ase.calculators.emt import EMT
    from pymatgen.io.ase import AseAtomsAdaptor

    atoms = AseAtomsAdaptor.get_atoms(fcc_structure(species, a, n))
    atoms.calc = EMT()
    return atoms


def _min_energy_per_atom(atoms: Any, lo: float, hi: float, xatol: float) -> tuple[float, float]:
    """Minimise E/atom over a uniform scale of the cell: (best scale, E/atom there)."""
    from scipy.optimize import minimize_scalar

    cell0 = np.array(atoms.get_cell())
    n = len(atoms)

    def energy(scale: float) -> float:
        atoms.set_cell(cell0 * scale, scale_atoms=True)
        return float(atoms.get_potential_energy()) / n

    res = minimize_scalar(energy, bounds=(lo, hi), method="bounded", options={"xatol": xatol})
    return float(res.x), energy(float(res.x))


@cache
def emt_reference(element: str) -> tuple[float, float]:
    """(a0, E/atom) of the pure fcc element at its EMT equilibrium; the mixing-energy baseline.

    EMT's a0 differs from experiment by up to a few %, so Vegard's law must start from it.
    """
    from ase.data import atomic_numbers, reference_states

    state: Any = reference_states[atomic_numbers[element]]
    guess = float(state["a"])
    atoms = _emt_atoms([element] * 4, guess, 1)
    scale, e = _min_energy_per_atom(atoms, 0.9, 1.1, 1e-8)
    return guess * scale, e


def emt_cell(fractions: Mapping[str, float], supercell: int = 2) -> dict[str, int]:
    """Atoms of each element in the ``4 * supercell**3``-site cell that stands for a
    composition: a 32-atom cell holds fractions in steps of 1/32, so Cu0.156 Pd0.844 is
    computed as Cu5 Pd27 (0.15625)."""
    elements = list(fractions)
    counts = site_counts([fractions[e] for e in elements], 4 * supercell**3)
    return dict(zip(elements, counts, strict=True))


def emt_mixing_energy(
    fractions: Mapping[str, float], *, supercell: int = 2, relax: bool = True
) -> float:
    """Mixing energy (eV/atom) of the fcc alloy: E(alloy)/N - sum_i x_i E(pure i)/atom.

    x_i are the site fractions actually realised in the supercell (:func:`emt_cell`), so the
    reference matches the structure computed rather than the requested composition.
    """
    counts = emt_cell(fractions, supercell)
    n_sites = sum(counts.values())
    refs = {el: emt_reference(el) for el, c in counts.items() if c > 0}
    a_vegard = sum(counts[el] / n_sites * refs[el][0] for el in refs)
    atoms = _emt_atoms(_species_order(counts), a_vegard, supercell)
    if relax:
        _, e_alloy = _min_energy_per_atom(atoms, *RELAX_RANGE, RELAX_XATOL)
    else:
        e_alloy = float(atoms.get_potential_energy()) / len(atoms)
    return e_alloy - sum(counts[el] / n_sites * refs[el][1] for el in refs)


def _build_emt(req: _Request) -> Oracle:
    objective = _single_objective("emt", req.objectives)
    param = _composition_parameter(req.parameters)
    elements = [str(e) for e in param.get("elements") or []]
    unsupported = [e for e in elements if e not in EMT_ELEMENTS]
    if unsupported:
        raise OracleConfigError(
            f"the emt oracle cannot compute {', '.join(unsupported)} in {param['name']!r}: "
            f"EMT has parameters only for {', '.join(EMT_ELEMENTS)}"
        )
    supercell = _supercell_option(req.options)
    relax = _bool_option(req.options, "relax", True)
    for el in elements:
        emt_reference(el)  # pay for the references and the cell template now, not in trial 1
    _fcc_frac_coords(supercell)
    name = param["name"]

    def evaluate(values: dict[str, Any]) -> dict[str, float]:
        fractions = _composition_value(values.get(name), elements, name)
        energy = emt_mixing_energy(fractions, supercell=supercell, relax=relax)
        return Outcomes({objective: energy}, simulated(emt_cell(fractions, supercell)))

    return evaluate


def simulated(counts: Mapping[str, int]) -> dict[str, str]:
    """Result metadata saying what was computed, since a cell of N sites holds fractions in
    steps of 1/N only: the atoms (``Cu5 Pd27``) and their fractions (``Cu0.15625 Pd0.84375``)
    beside the composition asked for."""
    n = sum(counts.values())
    present = [(el, c) for el, c in counts.items() if c]
    return {
        "simulated_cell": " ".join(f"{el}{c}" for el, c in present),
        "simulated_composition": " ".join(f"{el}{c / n:g}" for el, c in present),
    }


def _composition_parameter(parameters: list[dict[str, Any]], kind: str = "emt") -> dict[str, Any]:
    comps = [p for p in parameters if p["type"] == "composition"]
    if len(comps) != 1:
        found = "none" if not comps else ", ".join(repr(p["name"]) for p in comps)
        raise OracleConfigError(
            f"the {kind} oracle needs exactly one composition parameter (the alloy), found {found}"
        )
    return comps[0]


def _supercell_option(options: Mapping[str, Any]) -> int:
    n = options.get("supercell", 2)
    lo, hi = SUPERCELL_RANGE
    if not isinstance(n, int) or isinstance(n, bool) or not lo <= n <= hi:
        raise OracleConfigError(
            f"emt option supercell must be a whole number from {lo} to {hi} "
            f"(the fcc cell repeated n x n x n, 4n^3 atoms), got {n!r}"
        )
    return n


def _bool_option(options: Mapping[str, Any], key: str, default: bool) -> bool:
    v = options.get(key, default)
    if not isinstance(v, bool):
        raise OracleConfigError(f"oracle option {key} must be true or false, got {v!r}")
    return v


def _composition_value(v: Any, elements: list[str], name: str) -> dict[str, float]:
    """An assignment's composition as fractions over the parameter's elements, summing to 1."""
    if isinstance(v, str):
        v = _parse_formula(v)
    if not isinstance(v, Mapping):
        raise ValueError(f"parameter {name!r} must be a mapping of element to fraction, got {v!r}")
    unknown = [str(e) for e in v if e not in elements]
    if unknown:
        raise ValueError(f"{name!r}: element {unknown[0]} is not one of {', '.join(elements)}")
    x = [float(v.get(e, 0.0)) for e in elements]
    if not all(math.isfinite(f) and f >= 0 for f in x) or sum(x) <= 0:
        raise ValueError(f"{name!r}: fractions must be finite, >= 0 and not all 0, got {dict(v)}")
    total = sum(x)
    return {e: f / total for e, f in zip(elements, x, strict=True)}


def _parse_formula(text: str) -> dict[str, float]:
    from pymatgen.core import Composition

    comp = Composition(text).fractional_composition
    return {str(el): float(amount) for el, amount in comp.items()}


# ---------------------------------------------------------------- table look-up


@dataclass(frozen=True)
class _Table:
    """Rows split into numeric features (distance) and categorical ones (must match)."""

    numeric: np.ndarray  # rows x numeric features
    categorical: np.ndarray  # rows x categorical features, canonical strings
    outcomes: np.ndarray  # rows x objectives
    span: np.ndarray  # per numeric feature, for min-max normalisation


Reader = Callable[[Mapping[str, Any]], list[Any]]


def _build_table(req: _Request) -> Oracle:
    path = _table_path(req.table, req.options)
    header, rows = _read_csv(path)
    nearest = _bool_option(req.options, "nearest", True)
    num_readers: list[Reader] = []
    cat_readers: list[Reader] = []
    num_cols: list[list[float]] = [[] for _ in rows]
    cat_cols: list[list[str]] = [[] for _ in rows]
    for p in req.parameters:
        kind, row_reader, value_reader = _table_feature(p, header, path)
        if kind == "skip":
            continue
        (num_readers if kind == "numeric" else cat_readers).append(value_reader)
        target = num_cols if kind == "numeric" else cat_cols
        for i, row in enumerate(rows):
            target[i].extend(row_reader(row, i))
    outcomes = _table_outcomes(req.objectives, header, rows, path)
    table = _table_arrays(num_cols, cat_cols, outcomes)
    return _table_lookup(table, num_readers, cat_readers, req.objectives, nearest, path)


def _table_arrays(num: list[list[float]], cat: list[list[str]], out: np.ndarray) -> _Table:
    numeric = np.array(num, dtype=float).reshape(len(num), -1)
    categorical = np.array(cat, dtype=object).reshape(len(cat), -1)
    span = np.ptp(numeric, axis=0) if numeric.shape[1] else np.zeros(0)
    span = np.where(span > 0, span, 1.0)
    return _Table(numeric, categorical, out, span)


def _table_lookup(
    table: _Table,
    num_readers: list[Reader],
    cat_readers: list[Reader],
    objectives: list[str],
    nearest: bool,
    path: Path,
) -> Oracle:
    def evaluate(values: dict[str, Any]) -> dict[str, float]:
        q_num = np.array([x for r in num_readers for x in r(values)], dtype=float)
        q_cat = np.array([x for r in cat_readers for x in r(values)], dtype=object)
        i = _find_row(table, q_num, q_cat, nearest)
        if i is None:
            raise ValueError(f"no row of {path.name} matches {values} (nearest look-up is off)")
        return {o: float(v) for o, v in zip(objectives, table.outcomes[i], strict=True)}

    return evaluate


def _find_row(table: _Table, q_num: np.ndarray, q_cat: np.ndarray, nearest: bool) -> int | None:
    """First exact match; else, if allowed, the nearest row (categorical mismatch costs 1).

    A categorical mismatch costs as much as the whole range of one numeric column, so rows
    with matching categories win unless they are far away; no category is mandatory.
    """
    diff = np.abs(table.numeric - q_num)
    tol = TABLE_RTOL * np.maximum(np.abs(table.numeric), np.abs(q_num)) + TABLE_ATOL
    same_cat = table.categorical == q_cat
    exact = np.all(diff <= tol, axis=1) & np.all(same_cat, axis=1)
    if exact.any():
        return int(np.argmax(exact))
    if not nearest:
        return None
    d2 = np.sum((diff / table.span) ** 2, axis=1) + np.sum(~same_cat, axis=1)
    return int(np.argmin(d2))


def _table_path(table: str | None, options: Mapping[str, Any]) -> Path:
    if not table:
        raise OracleConfigError("the table oracle needs `table:`, the path of a CSV file")
    path = Path(table).expanduser()
    base = options.get("base_dir")
    if not path.is_absolute():
        path = (Path(base) if base else Path.cwd()) / path
    if not path.is_file():
        where = f"base_dir {base}" if base else "the working directory"
        raise OracleConfigError(
            f"oracle table {table!r} not found (looked for {path}; relative to {where})"
        )
    return path


def _read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = [h.strip() for h in reader.fieldnames or []]
            reader.fieldnames = header
            rows = [{k: (v or "").strip() for k, v in r.items() if k is not None} for r in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise OracleConfigError(f"oracle table {path} cannot be read: {exc}") from None
    if not rows:
        raise OracleConfigError(f"oracle table {path} has no data rows")
    return header, rows


def _table_outcomes(
    objectives: list[str], header: list[str], rows: list[dict[str, str]], path: Path
) -> np.ndarray:
    missing = [o for o in objectives if o not in header]
    if missing:
        raise OracleConfigError(
            f"oracle table {path.name} has no column for objective {missing[0]!r} "
            f"(columns: {', '.join(header)})"
        )
    return np.array(
        [[_cell_float(r, o, i, path) for o in objectives] for i, r in enumerate(rows)], dtype=float
    )


def _cell_float(row: Mapping[str, str], col: str, i: int, path: Path) -> float:
    text = row.get(col, "")
    try:
        v = float(text)
    except ValueError:
        v = math.nan
    if not math.isfinite(v):
        raise OracleConfigError(
            f"oracle table {path.name}, line {i + 2}, column {col!r}: {text!r} is not a number"
        )
    return v


def _cat_key(v: Any) -> str:
    """Compare categories as text, but 1, 1.0 and '1' alike: CSV cells lose the type."""
    try:
        return repr(float(v)) if not isinstance(v, bool) else str(v)
    except (TypeError, ValueError):
        return str(v).strip()


RowReader = Callable[[Mapping[str, str], int], list[Any]]


def _table_feature(
    p: Mapping[str, Any], header: list[str], path: Path
) -> tuple[str, RowReader, Reader]:
    """(kind, read a CSV row, read an assignment) for one parameter."""
    name, ptype = p["name"], p["type"]
    if ptype == "composition":
        return _composition_feature(p, header, path)
    if name not in header:
        if ptype == "fixed":
            return "skip", lambda row, i: [], lambda values: []  # a constant cannot discriminate
        raise OracleConfigError(
            f"oracle table {path.name} has no column for parameter {name!r} "
            f"(columns: {', '.join(header)})"
        )
    if ptype in ("range", "integer"):
        return (
            "numeric",
            lambda row, i: [_cell_float(row, name, i, path)],
            lambda values: [float(_required(values, name))],
        )
    if ptype == "fixed":
        return (
            "categorical",
            lambda row, i: [_cat_key(row[name])],
            lambda values: [_cat_key(values.get(name, p.get("value")))],
        )
    return (
        "categorical",
        lambda row, i: [_cat_key(row[name])],
        lambda values: [_cat_key(_required(values, name))],
    )


def _required(values: Mapping[str, Any], name: str) -> Any:
    if name not in values:
        raise ValueError(f"parameter {name!r} is missing from the assignment")
    return values[name]


def _composition_feature(
    p: Mapping[str, Any], header: list[str], path: Path
) -> tuple[str, RowReader, Reader]:
    """A formula column named after the parameter, or one fraction column per element."""
    name = p["name"]
    elements = [str(e) for e in p.get("elements") or []]

    def from_values(values: Mapping[str, Any]) -> list[Any]:
        fr = _composition_value(_required(values, name), elements, name)
        return [fr[e] for e in elements]

    if name in header:
        return "numeric", lambda row, i: _formula_cell(row[name], elements, i, path), from_values
    missing = [e for e in elements if e not in header]
    if missing:
        raise OracleConfigError(
            f"oracle table {path.name} has no column {name!r} (a formula) and no columns for "
            f"element(s) {', '.join(missing)} of composition parameter {name!r}"
        )

    def from_row(row: Mapping[str, str], i: int) -> list[Any]:
        x = [_cell_float(row, e, i, path) for e in elements]
        if min(x) < 0 or sum(x) <= 0:
            raise OracleConfigError(
                f"oracle table {path.name}, line {i + 2}: fractions of {name!r} must be >= 0 "
                f"and not all 0, got {x}"
            )
        return [f / sum(x) for f in x]

    return "numeric", from_row, from_values


def _formula_cell(text: str, elements: list[str], i: int, path: Path) -> list[float]:
    where = f"oracle table {path.name}, line {i + 2}"
    try:
        fr = _parse_formula(text)
    except Exception as exc:  # pymatgen raises several types for bad formulas
        raise OracleConfigError(f"{where}: {text!r} is not a chemical formula ({exc})") from None
    extra = [e for e in fr if e not in elements]
    if extra:
        raise OracleConfigError(
            f"{where}: {text!r} contains {extra[0]}, which is not one of {', '.join(elements)}"
        )
    return [fr.get(e, 0.0) for e in elements]


def _build_chgnet(req: _Request) -> Oracle:
    """Imported here, so that no other oracle pays for (or needs) chgnet and torch."""
    from loopctl.drivers.chgnet_oracle import build

    return build(req)


_BUILDERS: dict[str, Callable[[_Request], Oracle]] = {
    "emt": _build_emt,
    "chgnet": _build_chgnet,
    "function": _build_function,
    "table": _build_table,
}
