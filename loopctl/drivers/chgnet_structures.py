"""The CHGNet oracle over a pool of structure files: each row names a CIF or POSCAR.

A campaign whose space pairs a ``structure`` parameter (a file, relative to the campaign
file's folder) with a ``formula`` parameter (the composition the model sees, taken from the
file when the campaign is read) asks for one file at a time. The file is read with pymatgen
and relaxed as it is by CHGNet under the step cap (no prototype, no supercell: the cell is
the file's); the quantities are those of a pool of formulas
(:mod:`loopctl.drivers.chgnet_formulas`): energy per atom, formation energy against the same
elemental references, and the energy above the hull of the structure's chemical system.
Provenance adds the file as the trial names it, the path it was read from and the sha256
of its bytes, so a result says exactly which structure it is of.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from loopctl.drivers.base import TrialFailed
from loopctl.drivers.chgnet_formulas import Computed
from loopctl.drivers.chgnet_oracle import Settings, relax, unsupported
from loopctl.structure_file import StructureFileError, read_structure

MAX_ATOMS = 200  # a file's cell is relaxed as given: beyond this, minutes per step here


def compute_structure(path: Any, formula: Any, s: Settings, base_dir: str | None) -> Computed:
    """Read and relax the structure in ``path``; TrialFailed (not retryable) says why not."""
    if not isinstance(path, str) or not path.strip():
        raise TrialFailed(f"a structure file path is needed, got {path!r}")
    try:
        cell, resolved, digest = read_structure(path.strip(), base_dir)
    except StructureFileError as exc:
        raise TrialFailed(str(exc)) from None
    comp = cell.composition
    if isinstance(formula, str) and formula.strip():
        from pymatgen.core import Composition

        if not Composition(formula).reduced_composition.almost_equals(comp.reduced_composition):
            raise TrialFailed(
                f"structure file {path!r} now holds {comp.reduced_formula}, not {formula}: "
                "it changed after the campaign was read"
            )
    for el in comp.elements:
        reason = unsupported(str(el))
        if reason:
            raise TrialFailed(f"{path}: {reason}")
    if len(cell) > MAX_ATOMS:
        raise TrialFailed(
            f"structure file {path!r} has {len(cell)} atoms; the oracle relaxes cells of up "
            f"to {MAX_ATOMS}"
        )
    r = relax(cell, model=s.model, steps=s.steps, fmax=s.fmax)
    counts = {str(el): round(n) for el, n in comp.items()}
    how: dict[str, Any] = {
        "structure": f"from file {path} ({len(cell)} atoms, {comp.reduced_formula})",
        "prototype": "file",
        "structure_file": path,
        "structure_path": str(resolved),
        "structure_sha256": digest,
    }
    return Computed(r, counts, False, how)


def base_dir(options: Mapping[str, Any]) -> str | None:
    """The campaign file's folder, which the controller sends with the oracle's options."""
    base = options.get("base_dir")
    return str(base) if base else None
