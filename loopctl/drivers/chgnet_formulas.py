"""The CHGNet oracle over a pool of formulas: each row's formula becomes a structure.

A campaign whose space is a ``formula`` parameter (the candidates are a pool's rows, any
elements) asks for a formula at a time. An oxide (``BaTiO3``, ``MgAl2O4``) is built from
the shipped prototypes (:mod:`loopctl.drivers.prototypes`); a formula of other elements
(``Cu3Au``, ``Pd0.3Pt0.7``) is an ordered supercell on the ``lattice`` option, as the
composition campaigns build theirs. Either is relaxed by CHGNet under the step cap, and
the oracle reports

* ``energy_per_atom``;
* ``formation_energy``: against each element in its reference state by the same model (the
  ground-state crystal as ASE knows it; O, N, H, F and Cl as the diatomic molecule in a box,
  with no fitted anion correction, so oxide formation energies are on the raw PBE-like
  scale: compare them with each other, not with tabulated values);
* ``mixing_energy`` (alloys only): against the elements on the alloy's own lattice;
* ``e_above_hull``: the distance to the convex hull of the formula's own chemical system
  (pymatgen ``PhaseDiagram``): its elements' references, and those ``hull_formulas`` (computed
  at set-up, the same way as a trial) and ``hull_entries`` whose elements it contains.

Elemental references are computed when a trial first needs them and cached per process.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from loopctl.drivers import prototypes
from loopctl.drivers.base import TrialFailed
from loopctl.drivers.chgnet_oracle import (
    Once,
    Relaxed,
    Settings,
    cell_counts,
    ground_reference,
    hull_options,
    lattice_reference,
    model_provenance,
    optimizer,
    relax,
    relax_alloy,
    relaxed_metadata,
    unsupported,
)
from loopctl.drivers.oracle_models import (
    Oracle,
    OracleConfigError,
    Outcomes,
    _parse_formula,
    simulated,
)


@dataclass(frozen=True)
class Computed:
    """One formula relaxed: the result, the cell's atoms, and how it was built."""

    relaxed: Relaxed
    counts: dict[str, int]
    alloy: bool
    how: dict[str, Any]


def build_formulas(
    name: str,
    objectives: list[str],
    s: Settings,
    options: Mapping[str, Any],
    *,
    warm: bool = True,
    structure: str | None = None,
) -> Oracle:
    """The oracle for a campaign over parameter ``name``, a formula, or over parameter
    ``structure``, a structure file whose composition ``name`` holds
    (:mod:`loopctl.drivers.chgnet_structures`). The model and the hull compounds are
    computed in the background from here on; the first trial waits."""
    if structure is not None and "mixing_energy" in objectives:
        raise OracleConfigError(
            "mixing_energy is defined for the oracle's ordered alloy cells; a pool of "
            "structure files gives energy_per_atom, formation_energy and e_above_hull"
        )
    base = options.get("base_dir")
    given, formulas = hull_options(options, None)
    wants_hull = "e_above_hull" in objectives
    ready = Once(lambda: _prepare(s, given, formulas if wants_hull else []))
    if warm:
        threading.Thread(target=ready.quietly, daemon=True, name="chgnet-warm-up").start()
    provenance = model_provenance(s)

    def evaluate(values: dict[str, Any]) -> dict[str, float]:
        formula = values.get(name)
        if not isinstance(formula, str) or not formula:
            raise TrialFailed(f"parameter {name!r} must be a formula, got {formula!r}")
        compounds = ready.get()
        if structure is not None:
            from loopctl.drivers.chgnet_structures import compute_structure

            c = compute_structure(values.get(structure), formula, s, base)
        else:
            c = compute(formula, s)
        e = c.relaxed.energy_per_atom
        x = {el: n / sum(c.counts.values()) for el, n in c.counts.items() if n}
        quantities = {"energy_per_atom": e}
        ground = {el: _try(ground_reference, el, s.model, s.fmax) for el in x}
        wanted = [*objectives, *(["formation_energy"] if wants_hull else [])]
        _add(quantities, "formation_energy", wanted, lambda: e - _weighted(x, ground))
        if c.alloy:
            same = {el: _try(lattice_reference, el, s.lattice, s.model, s.fmax) for el in x}
            _add(quantities, "mixing_energy", wanted, lambda: e - _weighted(x, same))
        elif "mixing_energy" in objectives:
            raise TrialFailed(
                f"no mixing energy for {formula}: it is defined for alloys on one lattice, "
                "and this is an oxide (ask for formation_energy or e_above_hull)"
            )
        if wants_hull:
            quantities["e_above_hull"] = e - hull_energy(c.counts, ground, compounds)
        meta: dict[str, Any] = {
            **simulated(c.counts),
            **provenance,
            **c.how,
            **relaxed_metadata(c.relaxed),
            "formation_references": references_used(x),
        }
        meta.update({k: v for k, v in quantities.items() if k not in objectives})
        return Outcomes({o: quantities[o] for o in objectives}, meta)

    return evaluate


def compute(formula: str, s: Settings) -> Computed:
    """Build and relax the structure that stands for ``formula``; TrialFailed says why not."""
    try:
        fractions = _parse_formula(formula)
    except Exception as exc:  # pymatgen raises several types for bad formulas
        raise TrialFailed(f"{formula!r} is not a chemical formula ({exc})") from None
    for el in fractions:
        reason = unsupported(el)
        if reason:
            raise TrialFailed(f"{formula}: {reason}")
    if prototypes.ANION in fractions and len(fractions) > 1:
        try:
            cell, proto, scale = prototypes.structure(formula)
        except prototypes.NoPrototype as exc:
            raise TrialFailed(str(exc)) from None
        r = relax(cell, model=s.model, steps=s.steps, fmax=s.fmax)
        counts = {str(el): int(n) for el, n in cell.composition.items()}
        ref = "".join(f"{el}{n if n > 1 else ''}" for el, n in _reference_counts(proto).items())
        how = {
            "structure": f"{proto.name} prototype ({proto.space_group}, {len(cell)}-atom "
            f"primitive cell), from {ref} scaled x{scale:.4f} by ionic radii",
            "prototype": proto.name,
        }
        return Computed(r, counts, False, how)
    nonmetals = [el for el in fractions if not _metal(el)]
    if nonmetals:
        raise TrialFailed(
            f"no structure for {formula}: the shipped prototypes are for oxides, and ordered "
            f"cells for alloys of metals and metalloids only ({', '.join(nonmetals)} is neither)"
        )
    counts = cell_counts(fractions, s)
    same = {el: _try(lattice_reference, el, s.lattice, s.model, s.fmax) for el in counts}
    r = relax_alloy(counts, same, s)
    n = s.supercell
    how = {"structure": f"ordered {s.lattice} {n}x{n}x{n} supercell", "prototype": s.lattice}
    return Computed(r, counts, True, how)


def _metal(element: str) -> bool:
    from pymatgen.core import Element

    return bool(Element(element).is_metal or Element(element).is_metalloid)


def _reference_counts(p: prototypes.Prototype) -> dict[str, int]:
    counts: dict[str, int] = {}
    for role, n in zip("AB", p.cations, strict=False):
        counts[p.reference[role]] = counts.get(p.reference[role], 0) + n
    counts[prototypes.ANION] = p.oxygens
    return counts


def _prepare(
    s: Settings, given: Mapping[str, float], formulas: list[str]
) -> list[tuple[dict[str, float], float]]:
    """Load the model; compute the ``hull_formulas`` (atoms, eV/atom) and add the
    ``hull_entries``: the compounds every trial's hull may contain."""
    optimizer(s.model)
    compounds: list[tuple[dict[str, float], float]] = [
        (_parse_formula(formula), energy) for formula, energy in given.items()
    ]
    for formula in formulas:
        try:
            c = compute(formula, s)
        except TrialFailed as exc:
            raise TrialFailed(f"hull compound {formula}: {exc.reason}") from None
        compounds.append(({k: float(v) for k, v in c.counts.items()}, c.relaxed.energy_per_atom))
    return compounds


def hull_energy(
    counts: Mapping[str, int],
    ground: Mapping[str, Relaxed | str],
    compounds: list[tuple[dict[str, float], float]],
) -> float:
    """The hull's energy per atom at this composition, in its own chemical system."""
    from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram
    from pymatgen.core import Composition

    system = {el for el, n in counts.items() if n}
    entries = []
    for el in sorted(system):
        ref = ground[el]
        if not isinstance(ref, Relaxed):
            raise TrialFailed(f"no energy above the hull: {ref}")
        entries.append(PDEntry(Composition(el), ref.energy_per_atom))
    for atoms, energy in compounds:
        if {el for el, n in atoms.items() if n} <= system:
            comp = Composition(atoms)
            entries.append(PDEntry(comp, energy * comp.num_atoms))
    hull = PhaseDiagram(entries)
    return float(hull.get_hull_energy_per_atom(Composition(dict(counts))))


def references_used(x: Mapping[str, float]) -> str:
    """Which reference state each element's formation energy is against (provenance)."""
    from ase.data import atomic_numbers, reference_states

    parts = []
    for el in sorted(x):
        state = reference_states[atomic_numbers[el]] or {}
        symmetry = state.get("symmetry", "?")
        parts.append(f"{el} {'molecule' if symmetry == 'diatom' else symmetry}")
    return ", ".join(parts)


def _try(fn: Any, *args: Any) -> Relaxed | str:
    try:
        return fn(*args)
    except TrialFailed as exc:
        return exc.reason


def _weighted(x: Mapping[str, float], refs: Mapping[str, Relaxed | str]) -> float:
    total = 0.0
    for el, f in x.items():
        ref = refs[el]
        if not isinstance(ref, Relaxed):
            raise TrialFailed(ref)
        total += f * ref.energy_per_atom
    return total


def _add(quantities: dict[str, float], key: str, wanted: list[str], value: Any) -> None:
    """Compute ``key`` into ``quantities``; a failure fails the trial only when the
    campaign needs that quantity (otherwise it is simply not recorded)."""
    try:
        quantities[key] = value()
    except TrialFailed as exc:
        if key in wanted:
            what = key.replace("_", " ")
            raise TrialFailed(f"no {what}: {exc.reason}") from None
