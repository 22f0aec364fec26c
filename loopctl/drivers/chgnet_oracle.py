"""The CHGNet oracle: alloy energies from a universal interatomic potential trained on DFT.

EMT knows seven fcc metals and gets some of their physics wrong (Cu-Au orders the wrong
way). CHGNet was trained on the Materials Project's PBE(+U) relaxations of ~1.5 million
structures and covers elements 1-94, so a campaign gets energies on the DFT scale at under a
second per relaxation step of a 32-atom cell (two busy cores) instead of CPU-hours.

A composition becomes an ordered supercell on one lattice (fcc by default, bcc on request),
its site counts rounded from the fractions and its arrangement a shuffle seeded by the
composition (both shared with the EMT oracle, :mod:`loopctl.drivers.oracle_models`). CHGNet's
``StructOptimizer`` relaxes cell and positions under a step cap; the oracle reports

* ``energy_per_atom``: the relaxed cell's energy, eV/atom;
* ``formation_energy``: against each element in its own ground-state crystal (ASE's
  reference states: fcc, bcc, hcp, diamond, ...), relaxed by the same model;
* ``mixing_energy``: against each element on the alloy's own lattice (EMT's quantity);
* ``e_above_hull``: the distance to the convex hull of the elemental references and any
  compounds the options name (pymatgen ``PhaseDiagram``), negative below it.

The model is loaded once per process and the references cached, computed in the background
from set-up on, so only a driver's first trial waits for them (10-20 s). Importing this
module does not import torch: the oracle builder imports it only for ``kind: chgnet``.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import threading
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, Generic, TypeVar

from loopctl.drivers.base import TrialFailed
from loopctl.drivers.oracle_models import (
    Oracle,
    OracleConfigError,
    Outcomes,
    _composition_value,
    _parse_formula,
    _Request,
    _species_order,
    cubic_frac_coords,
    simulated,
    site_counts,
)

MODELS = ("0.3.0", "r2scan")  # the checkpoints the chgnet wheel ships (0.2.0 is deprecated)
MAX_Z = 94  # CHGNet's atom embedding has 94 rows: H to Pu
OBJECTIVES = ("energy_per_atom", "formation_energy", "mixing_energy", "e_above_hull")
SITES = {"fcc": 4, "bcc": 2}  # sites in the conventional cubic cell
SPACE_GROUPS = {"fcc": "Fm-3m", "bcc": "Im-3m"}
SUPERCELL_RANGE = (1, 3)  # fcc 4, 32, 108 atoms; bcc 2, 16, 54
STEPS_RANGE = (1, 2000)
DEFAULT_STEPS = 100  # 32-atom cells took 15-35 FIRE steps from Vegard volumes (bench)
DEFAULT_FMAX = 0.05  # eV/A, the usual "relaxed" for a screening calculation
REFERENCE_STEPS = 500  # elemental cells are tiny: relax them fully whatever the cap
VOLUME_GUARD = (0.5, 2.0)  # a cell whose volume halves or doubles has blown up
MOLECULE_BOX = 12.0  # A: the O2, N2, ... references, beyond the graph cutoff of their images
# its options are listed in oracle_models.KNOWN_OPTIONS, checked before it is imported

T = TypeVar("T")
_LOAD = threading.Lock()
_OPTIMIZERS: dict[str, Any] = {}  # by model name: loaded once per process
# one relaxation at a time per process: the model is shared, and on a small machine two
# relaxations in threads are slower than one after the other (torch uses one thread here)
_COMPUTE = threading.Lock()


@dataclass(frozen=True)
class Settings:
    """The options, checked, in the form the computations need."""

    model: str
    steps: int
    fmax: float
    supercell: int
    lattice: str


@dataclass(frozen=True)
class Relaxed:
    """What one relaxation gave, with what is needed to judge it."""

    energy_per_atom: float
    volume_per_atom: float
    steps: int
    converged: bool
    lengths: tuple[float, float, float]
    angles: tuple[float, float, float]


# ---------------------------------------------------------------- model


def optimizer(model: str) -> Any:
    """CHGNet's StructOptimizer (FIRE, cell and positions) for a shipped checkpoint, loaded
    once per process. Torch gets one thread unless LOOPCTL_TORCH_THREADS says otherwise: on
    two busy cores a second thread made each force call 10-15x slower (0.7 s -> 8-12 s for
    32 atoms), and a campaign runs one driver process per core."""
    with _LOAD:  # held while loading: a second thread waits for the first one's model
        if model not in _OPTIMIZERS:
            _set_threads()
            from chgnet.model import CHGNet, StructOptimizer

            # every force call warns about a tensor it turns into a number: noise in the log
            warnings.filterwarnings("ignore", "Converting a tensor with requires_grad=True")
            with contextlib.redirect_stdout(io.StringIO()):  # it prints its device and size
                net = CHGNet.load(model_name=model, use_device="cpu", verbose=False)
                opt = StructOptimizer(model=net, use_device="cpu", on_isolated_atoms="error")
            _OPTIMIZERS[model] = opt
        return _OPTIMIZERS[model]


def _set_threads() -> None:
    """Torch's threads for the calling thread (OpenMP counts them per thread, and each trial
    runs in a new one)."""
    import torch

    torch.set_num_threads(int(os.environ.get("LOOPCTL_TORCH_THREADS") or 1))


def chgnet_version() -> str:
    from importlib.metadata import version

    return version("chgnet")


def unsupported(element: str) -> str | None:
    """Why CHGNet cannot compute ``element``, or None when it can."""
    from pymatgen.core import Element

    try:
        z = Element(element).Z
    except ValueError:
        return f"{element!r} is not a chemical element"
    if z > MAX_Z:
        return f"CHGNet has no embedding for {element} (Z={z}): it covers elements 1-{MAX_Z}"
    return None


# ---------------------------------------------------------------- structures and relaxation


def lattice_structure(species: Sequence[str], lattice: str, n: int, volume_per_atom: float) -> Any:
    """The n x n x n cubic supercell of ``lattice`` with the sites given, at that volume."""
    from pymatgen.core import Lattice, Structure

    coords = cubic_frac_coords(SPACE_GROUPS[lattice], n)
    if len(species) != len(coords):
        raise ValueError(f"{len(species)} species for {len(coords)} sites of a {lattice} cell")
    a = (volume_per_atom * len(coords)) ** (1 / 3)
    return Structure(Lattice.cubic(a), list(species), coords)


def molecule_structure(element: str, bond: float) -> Any:
    """A diatomic molecule in a cubic box wide enough that it does not see its images
    (CHGNet's graph cutoff is 5-6 A)."""
    from pymatgen.core import Lattice, Structure

    a = MOLECULE_BOX
    half = bond / 2 / a
    return Structure(
        Lattice.cubic(a), [element, element], [[0.5 - half, 0.5, 0.5], [0.5 + half, 0.5, 0.5]]
    )


def relax(
    structure: Any, *, model: str, steps: int, fmax: float, relax_cell: bool = True
) -> Relaxed:
    """Relax cell and positions (positions only for a molecule in a box); a relaxation
    that fails or blows up is a failed trial."""
    n = len(structure)
    v0 = structure.volume / n
    what = structure.composition.reduced_formula
    try:
        opt = optimizer(model)
        with _COMPUTE:
            _set_threads()
            out = opt.relax(
                structure,
                fmax=fmax,
                steps=steps,
                relax_cell=relax_cell,
                verbose=False,
                assign_magmoms=False,
            )
    except Exception as exc:  # torch, ASE and the graph converter raise many kinds
        raise TrialFailed(
            f"CHGNet relaxation of {what} failed: {type(exc).__name__}: {exc}"
        ) from None
    traj, final = out["trajectory"], out["final_structure"]
    # the observer records the start, every step, and the end once more
    taken = max(len(traj) - 2, 0)
    energy = float(traj.energies[-1]) / n
    ratio = final.volume / n / v0
    if not math.isfinite(energy) or not VOLUME_GUARD[0] <= ratio <= VOLUME_GUARD[1]:
        raise TrialFailed(
            f"CHGNet relaxation of {what} blew up after {taken} steps: energy {energy:g} "
            f"eV/atom, volume x{ratio:.3g} of the start (allowed {VOLUME_GUARD[0]}-"
            f"{VOLUME_GUARD[1]})"
        )
    (la, lb, lc), (al, be, ga) = final.lattice.abc, final.lattice.angles
    lengths, angles = (float(la), float(lb), float(lc)), (float(al), float(be), float(ga))
    # ASE stops on convergence or at the cap; stopping at the cap is counted as not converged
    return Relaxed(energy, final.volume / n, taken, taken < steps, lengths, angles)


# ---------------------------------------------------------------- elemental references


@cache
def lattice_reference(element: str, lattice: str, model: str, fmax: float) -> Relaxed:
    """The pure element on the alloy's lattice: the mixing-energy baseline and the volume
    Vegard's law starts from. Raises TrialFailed when the model cannot compute it."""
    reason = unsupported(element)
    if reason:
        raise TrialFailed(reason)
    guess = _volume_guess(element)
    cell = lattice_structure([element] * SITES[lattice], lattice, 1, guess)
    return relax(cell, model=model, steps=REFERENCE_STEPS, fmax=fmax)


@cache
def ground_reference(element: str, model: str, fmax: float) -> Relaxed:
    """The element in its ground-state crystal as ASE knows it: the formation-energy and
    hull baseline. Gases and complex crystals (O, N, Mn, Ga, ...) have none here."""
    reason = unsupported(element)
    if reason:
        raise TrialFailed(reason)
    from ase.build import bulk
    from ase.data import atomic_numbers, reference_states

    state: Any = reference_states[atomic_numbers[element]] or {}
    symmetry = state.get("symmetry")
    if symmetry in SITES:  # fcc and bcc elements: the same cell as the lattice reference
        return lattice_reference(element, symmetry, model, fmax)
    if symmetry == "diatom":  # O, N, H, F, Cl: the molecule, alone in a box
        return relax(
            molecule_structure(element, float(state["d"])),
            model=model,
            steps=REFERENCE_STEPS,
            fmax=fmax,
            relax_cell=False,
        )
    try:
        atoms = bulk(element)
    except (ValueError, KeyError, NotImplementedError) as exc:
        raise TrialFailed(
            f"no elemental reference crystal for {element} (ASE's reference state is "
            f"{symmetry or 'unknown'}: {exc}), so no formation energy or hull"
        ) from None
    from pymatgen.io.ase import AseAtomsAdaptor

    return relax(
        AseAtomsAdaptor.get_structure(atoms), model=model, steps=REFERENCE_STEPS, fmax=fmax
    )


def _volume_guess(element: str) -> float:
    """Volume per atom to start from: the experimental one where ASE has it."""
    from ase.build import bulk

    try:
        atoms = bulk(element)
        return float(atoms.get_volume()) / len(atoms)
    except (ValueError, KeyError, NotImplementedError):
        from pymatgen.core import Element

        radius = Element(element).atomic_radius or 1.5
        return float(4 / 3 * math.pi * float(radius) ** 3 / 0.74)  # close-packed spheres


def _try(fn: Any, *args: Any) -> Relaxed | str:
    try:
        return fn(*args)
    except TrialFailed as exc:
        return exc.reason


# ---------------------------------------------------------------- the oracle


def build(req: _Request) -> Oracle:
    """The oracle for a campaign. Everything that can be checked without the model is
    checked here; the model and the references are computed in the background from here on
    (setup must return within the controller's heartbeat timeout), and the first trial
    waits for them."""
    objectives = _objectives(req.objectives)
    param = _material_parameter(req.parameters)
    s = settings(req.options)
    _check_installed(s.model)
    if param["type"] == "formula":
        from loopctl.drivers.chgnet_formulas import build_formulas

        files = [p["name"] for p in req.parameters if p.get("type") == "structure"]
        return build_formulas(
            param["name"],
            objectives,
            s,
            req.options,
            warm=req.warm,
            structure=files[0] if files else None,
        )
    elements = [str(e) for e in param.get("elements") or []]
    given, formulas = hull_options(req.options, elements)
    wants_hull = "e_above_hull" in objectives
    warm = Once(lambda: _prepare(elements, s, (given, formulas) if wants_hull else None))
    if req.warm:
        threading.Thread(target=warm.quietly, daemon=True, name="chgnet-warm-up").start()
    name = param["name"]
    provenance = {
        **model_provenance(s),
        "lattice": f"{s.lattice} {s.supercell}x{s.supercell}x{s.supercell}",
    }

    def evaluate(values: dict[str, Any]) -> dict[str, float]:
        fractions = _composition_value(values.get(name), elements, name)
        counts = cell_counts(fractions, s)
        ready = warm.get()
        r = relax_alloy(counts, ready.same, s)
        x = {e: c / sum(counts.values()) for e, c in counts.items() if c}
        quantities = {"energy_per_atom": r.energy_per_atom}
        for key, refs, what in (
            ("mixing_energy", ready.same, "mixing energy"),
            ("formation_energy", ready.ground, "formation energy"),
        ):
            try:
                quantities[key] = r.energy_per_atom - _weighted(x, refs, what)
            except TrialFailed:
                if key in objectives or (wants_hull and key == "formation_energy"):
                    raise  # what the campaign asked for cannot be computed: say why
        if ready.hull is not None:
            quantities["e_above_hull"] = r.energy_per_atom - _hull_energy(ready.hull, counts)
        meta: dict[str, Any] = {**simulated(counts), **provenance, **relaxed_metadata(r)}
        meta.update({k: v for k, v in quantities.items() if k not in objectives})
        return Outcomes({o: quantities[o] for o in objectives}, meta)

    return evaluate


def model_provenance(s: Settings) -> dict[str, Any]:
    """The model and relaxation settings, recorded with every result."""
    return {
        "model": f"CHGNet {s.model}",
        "model_version": s.model,
        "chgnet_version": chgnet_version(),
        "relax_step_cap": s.steps,
        "fmax": s.fmax,
    }


def relaxed_metadata(r: Relaxed) -> dict[str, Any]:
    """What one relaxation did, recorded with its result."""
    return {
        "relax_steps": r.steps,
        "converged": r.converged,
        "cell_lengths": " ".join(f"{v:.4f}" for v in r.lengths),
        "cell_angles": " ".join(f"{v:.2f}" for v in r.angles),
        "volume_per_atom": round(r.volume_per_atom, 5),
    }


def _material_parameter(parameters: list[dict[str, Any]]) -> dict[str, Any]:
    found = [p for p in parameters if p["type"] in ("composition", "formula")]
    if len(found) != 1:
        names = "none" if not found else ", ".join(repr(p["name"]) for p in found)
        raise OracleConfigError(
            "the chgnet oracle needs exactly one composition parameter (an alloy) or one "
            f"formula parameter (a pool of formulas), found {names}"
        )
    return found[0]


@dataclass(frozen=True)
class _Ready:
    """What every trial of a campaign shares: references by element, and the hull."""

    same: dict[str, Relaxed | str]  # on the alloy's lattice, or why not
    ground: dict[str, Relaxed | str]  # in the element's ground-state crystal, or why not
    hull: Any  # pymatgen PhaseDiagram, or None when no objective needs it


class Once(Generic[T]):
    """A computation run once, by whichever thread asks first; the others wait for it."""

    def __init__(self, compute: Callable[[], T]) -> None:
        self._compute = compute
        self._lock = threading.Lock()
        self._value: T | None = None
        self._error: str | None = None

    def get(self) -> T:
        with self._lock:
            if self._value is None and self._error is None:
                try:
                    self._value = self._compute()
                except TrialFailed as exc:
                    self._error = exc.reason
                except Exception as exc:  # a broken install, a model that will not load
                    self._error = f"{type(exc).__name__}: {exc}"
        if self._value is None:
            raise TrialFailed(f"the CHGNet oracle could not start: {self._error}")
        return self._value

    def quietly(self) -> None:
        """For the warm-up thread: a failure is reported by the trials that need it."""
        with contextlib.suppress(TrialFailed):
            self.get()


def _prepare(elements: list[str], s: Settings, hull: _HullOptions | None) -> _Ready:
    optimizer(s.model)
    same = {e: _try(lattice_reference, e, s.lattice, s.model, s.fmax) for e in elements}
    ground = {e: _try(ground_reference, e, s.model, s.fmax) for e in elements}
    return _Ready(same, ground, _hull(hull, same, ground, s) if hull is not None else None)


def _check_installed(model: str) -> None:
    """The package and the checkpoint, found without importing torch (seconds)."""
    from importlib.util import find_spec
    from pathlib import Path

    spec = find_spec("chgnet")
    if spec is None or not spec.submodule_search_locations:
        raise OracleConfigError(
            "the chgnet oracle needs the chgnet package: pip install 'loopctl[chgnet]'"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "pretrained" / model
    if not any(folder.glob("*.pth.tar")):
        raise OracleConfigError(f"the chgnet package has no weights for model {model} in {folder}")


def settings(options: Mapping[str, Any]) -> Settings:
    model = str(options.get("model", MODELS[0]))
    if model not in MODELS:
        raise OracleConfigError(
            f"chgnet option model must be one of {', '.join(MODELS)} (the checkpoints its "
            f"wheel ships), got {options.get('model')!r}"
        )
    steps = _whole(options, "steps", DEFAULT_STEPS, STEPS_RANGE, "FIRE steps per relaxation")
    n = _whole(options, "supercell", 2, SUPERCELL_RANGE, "the cubic cell repeated n x n x n")
    fmax = options.get("fmax", DEFAULT_FMAX)
    if not isinstance(fmax, (int, float)) or isinstance(fmax, bool) or not 0 < fmax <= 1:
        raise OracleConfigError(
            f"chgnet option fmax must be a number of eV/A in (0, 1], got {fmax!r}"
        )
    lattice = options.get("lattice", "fcc")
    if lattice not in SITES:
        raise OracleConfigError(f"chgnet option lattice must be fcc or bcc, got {lattice!r}")
    return Settings(model, steps, float(fmax), n, str(lattice))


def _whole(
    options: Mapping[str, Any], key: str, default: int, bounds: tuple[int, int], what: str
) -> int:
    v = options.get(key, default)
    lo, hi = bounds
    if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
        raise OracleConfigError(
            f"chgnet option {key} must be a whole number from {lo} to {hi} ({what}), got {v!r}"
        )
    return v


def _objectives(names: list[str]) -> list[str]:
    unknown = [n for n in names if n not in OBJECTIVES]
    if unknown:
        raise OracleConfigError(
            f"the chgnet oracle cannot compute objective {unknown[0]!r}; name objectives "
            f"{', '.join(OBJECTIVES)}"
        )
    return names


def cell_counts(fractions: Mapping[str, float], s: Settings) -> dict[str, int]:
    """Atoms of each element in the cell that stands for the composition (steps of 1/N)."""
    elements = list(fractions)
    n_sites = SITES[s.lattice] * s.supercell**3
    counts = site_counts([fractions[e] for e in elements], n_sites)
    return dict(zip(elements, counts, strict=True))


def relax_alloy(
    counts: Mapping[str, int], same: Mapping[str, Relaxed | str], s: Settings
) -> Relaxed:
    """Relax the ordered cell from Vegard's-law volume (the model's own elemental volumes)."""
    present = {e: c for e, c in counts.items() if c}
    for e in present:
        reason = unsupported(e)
        if reason:
            raise TrialFailed(reason)
    x = {e: c / sum(present.values()) for e, c in present.items()}
    volume = 0.0
    for e, f in x.items():
        ref = same[e]
        volume += f * (ref.volume_per_atom if isinstance(ref, Relaxed) else _volume_guess(e))
    cell = lattice_structure(_species_order(present), s.lattice, s.supercell, volume)
    return relax(cell, model=s.model, steps=s.steps, fmax=s.fmax)


def _weighted(x: Mapping[str, float], refs: Mapping[str, Relaxed | str], what: str) -> float:
    """sum_i x_i E_i over the references; an element without one fails the trial, saying why."""
    total = 0.0
    for e, f in x.items():
        ref = refs.get(e)
        if not isinstance(ref, Relaxed):
            raise TrialFailed(f"no {what}: {ref or f'no reference for {e}'}")
        total += f * ref.energy_per_atom
    return total


# ---------------------------------------------------------------- convex hull


_HullOptions = tuple[dict[str, float], list[str]]


def hull_options(options: Mapping[str, Any], elements: list[str] | None) -> _HullOptions:
    """``hull_entries`` ({formula: eV/atom}, on this model's scale) and ``hull_formulas``
    (compounds computed here), checked: formulas of the composition's elements only (of
    any elements when ``elements`` is None: a pool of formulas)."""
    given = options.get("hull_entries") or {}
    if not isinstance(given, Mapping):
        raise OracleConfigError("chgnet option hull_entries must map formula to eV/atom")
    entries: dict[str, float] = {}
    for formula, energy in given.items():
        _compound(formula, elements, "hull_entries")
        if not isinstance(energy, (int, float)) or not math.isfinite(energy):
            raise OracleConfigError(f"hull_entries {formula!r}: {energy!r} is not eV/atom")
        entries[str(formula)] = float(energy)
    formulas = options.get("hull_formulas") or []
    if not isinstance(formulas, Sequence) or isinstance(formulas, str):
        raise OracleConfigError("chgnet option hull_formulas must be a list of formulas")
    for formula in formulas:
        _compound(formula, elements, "hull_formulas")
    return entries, [str(f) for f in formulas]


def _hull(
    options: _HullOptions,
    same: Mapping[str, Relaxed | str],
    ground: Mapping[str, Relaxed | str],
    s: Settings,
) -> Any:
    """The phase diagram of the composition's elements: their ground states by this model,
    the ``hull_formulas`` computed as trials are (ordered cells on the alloy's lattice), and
    the ``hull_entries`` given."""
    from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram
    from pymatgen.core import Composition

    given, formulas = options
    missing = {e: ref for e, ref in ground.items() if not isinstance(ref, Relaxed)}
    entries = [
        PDEntry(Composition(e), ref.energy_per_atom)
        for e, ref in ground.items()
        if isinstance(ref, Relaxed)
    ]
    for formula in [*given, *formulas]:
        comp = _compound(formula, list(ground), "hull")
        lacking = [str(e) for e in comp.elements if str(e) in missing]
        if lacking:
            raise TrialFailed(f"hull compound {formula}: {missing[lacking[0]]}")
    for formula, energy in given.items():
        comp = _compound(formula, list(ground), "hull_entries")
        entries.append(PDEntry(comp, energy * comp.num_atoms))
    for formula in formulas:
        comp = _compound(formula, list(ground), "hull_formulas")
        counts = cell_counts({e: float(comp.get_atomic_fraction(e)) for e in same}, s)
        r = relax_alloy(counts, same, s)
        entries.append(PDEntry(Composition(counts), r.energy_per_atom * sum(counts.values())))
    if not entries:
        raise TrialFailed(f"no elemental reference for the hull: {next(iter(missing.values()))}")
    return PhaseDiagram(entries)


def _compound(formula: Any, elements: Sequence[str] | None, option: str) -> Any:
    from pymatgen.core import Composition

    try:
        comp = Composition(_parse_formula(str(formula)))
    except Exception as exc:  # pymatgen raises several types for bad formulas
        raise OracleConfigError(f"{option} {formula!r} is not a chemical formula ({exc})") from None
    if elements is None:
        return comp
    extra = [str(e) for e in comp.elements if str(e) not in elements]
    if extra:
        raise OracleConfigError(
            f"{option} {formula!r} contains {extra[0]}, which is not one of the "
            f"composition's elements ({', '.join(elements)})"
        )
    return comp


def _hull_energy(hull: Any, counts: Mapping[str, int]) -> float:
    from pymatgen.core import Composition

    return float(hull.get_hull_energy_per_atom(Composition({e: c for e, c in counts.items() if c})))
