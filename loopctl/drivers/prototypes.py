"""Oxide formulas as crystal structures: a small shipped set of prototypes, no download.

A pool of oxide formulas (``BaTiO3``, ``MgAl2O4``, ``NiO``) has no structures: the CHGNet
oracle needs one to relax. Each formula is matched, by its cation-to-oxygen ratio, to one
of five common oxide structure types, built with pymatgen's ``Structure.from_spacegroup``
from the coordinates of a reference compound, and its cell scaled from that compound's
by the ionic radii (Shannon's, as pymatgen ships them) of the cations that replace it:

=============  =========  ===========  ============================================
prototype      formula    space group  reference (lattice, A)
=============  =========  ===========  ============================================
rocksalt       AO         Fm-3m        MgO, a 4.212
fluorite       AO2        Fm-3m        CeO2, a 5.411
corundum       A2O3       R-3c         Al2O3, a 4.759, c 12.991
perovskite     ABO3       Pm-3m        SrTiO3, a 3.905 (A the larger cation)
spinel         AB2O4      Fd-3m        MgAl2O4, a 8.083, u 0.3874 (normal; A3O4 too)
=============  =========  ===========  ============================================

The primitive cell is used (2 to 14 atoms), so a relaxation costs seconds. The structure
is a starting point: the relaxation (cell and positions) finds the model's own minimum
within the prototype's symmetry basin; a compound whose real ground state is another
structure type is computed in the wrong one, and its energy is too high (the result
records which prototype was used). Nothing here imports torch.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

ANION = "O"


@dataclass(frozen=True)
class Prototype:
    """A structure type: its sites by role (A, B: cations; O), as in its reference compound."""

    name: str
    space_group: str
    reference: Mapping[str, str]  # role -> the element in the reference compound
    lattice: Callable[[], Any]  # the reference compound's pymatgen Lattice
    sites: tuple[tuple[str, tuple[float, float, float]], ...]  # (role, fractional coords)
    cations: tuple[int, ...]  # cation counts per formula unit, by role A, B, with O below
    oxygens: int


def _cubic(a: float) -> Callable[[], Any]:
    def make() -> Any:
        from pymatgen.core import Lattice

        return Lattice.cubic(a)

    return make


def _hexagonal(a: float, c: float) -> Callable[[], Any]:
    def make() -> Any:
        from pymatgen.core import Lattice

        return Lattice.hexagonal(a, c)

    return make


PROTOTYPES: dict[str, Prototype] = {
    p.name: p
    for p in (
        Prototype(
            "rocksalt",
            "Fm-3m",
            {"A": "Mg"},
            _cubic(4.212),
            (("A", (0.0, 0.0, 0.0)), ("O", (0.5, 0.5, 0.5))),
            (1,),
            1,
        ),
        Prototype(
            "fluorite",
            "Fm-3m",
            {"A": "Ce"},
            _cubic(5.411),
            (("A", (0.0, 0.0, 0.0)), ("O", (0.25, 0.25, 0.25))),
            (1,),
            2,
        ),
        Prototype(
            "corundum",
            "R-3c",
            {"A": "Al"},
            _hexagonal(4.759, 12.991),
            (("A", (0.0, 0.0, 0.3522)), ("O", (0.3064, 0.0, 0.25))),
            (2,),
            3,
        ),
        Prototype(
            "perovskite",
            "Pm-3m",
            {"A": "Sr", "B": "Ti"},
            _cubic(3.905),
            (("A", (0.0, 0.0, 0.0)), ("B", (0.5, 0.5, 0.5)), ("O", (0.5, 0.5, 0.0))),
            (1, 1),
            3,
        ),
        Prototype(
            "spinel",  # origin choice 1, as pymatgen's Fd-3m: A on 8a, B on 16d, O on 32e
            "Fd-3m",
            {"A": "Mg", "B": "Al"},
            _cubic(8.083),
            (("A", (0.0, 0.0, 0.0)), ("B", (0.625, 0.625, 0.625)), ("O", (0.3874,) * 3)),
            (1, 2),
            4,
        ),
    )
}


class NoPrototype(ValueError):
    """The formula matches none of the shipped prototypes; the message says why."""


def formula_counts(formula: str) -> dict[str, int]:
    """Whole atoms per formula unit (``Fe3O4`` -> Fe 3, O 4); a non-integral formula (a
    solid solution such as ``Mg0.5Ni0.5O``) has no ordered primitive cell here."""
    from pymatgen.core import Composition, Element

    try:
        comp = Composition(formula).reduced_composition
    except Exception as exc:  # pymatgen raises several types for bad formulas
        raise NoPrototype(f"{formula!r} is not a chemical formula ({exc})") from None
    odd = [str(el) for el in comp if not isinstance(el, Element)]
    if odd:  # pymatgen reads unknown symbols as placeholder species
        raise NoPrototype(f"{formula!r} is not a chemical formula ({odd[0]} is no element)")
    counts: dict[str, int] = {}
    for el, amount in comp.items():
        n = round(float(amount))
        if n < 1 or not math.isclose(float(amount), n, abs_tol=1e-6):
            raise NoPrototype(
                f"{formula}: {el} {float(amount):g} per formula unit is not a whole number "
                "(solid solutions have no ordered prototype here)"
            )
        counts[str(el)] = n
    return counts


def match(formula: str) -> tuple[Prototype, dict[str, str]]:
    """The prototype for an oxide formula and which element sits on each cation role."""
    counts = formula_counts(formula)
    if ANION not in counts or len(counts) == 1:
        raise NoPrototype(f"{formula} is not an oxide: prototypes exist for oxides only")
    cations = {e: n for e, n in counts.items() if e != ANION}
    oxygens = counts[ANION]
    for p in PROTOTYPES.values():
        roles = _assign(p, cations, oxygens)
        if roles is not None:
            return p, roles
    shipped = ", ".join(f"{p.name} ({_stoichiometry(p)})" for p in PROTOTYPES.values())
    raise NoPrototype(f"no shipped prototype for {formula}; the shipped ones are {shipped}")


def _stoichiometry(p: Prototype) -> str:
    parts = [f"{r}{n if n > 1 else ''}" for r, n in zip("AB", p.cations, strict=False)]
    return "".join(parts) + f"O{p.oxygens if p.oxygens > 1 else ''}"


def _assign(p: Prototype, cations: Mapping[str, int], oxygens: int) -> dict[str, str] | None:
    """Roles for the cations if the formula has the prototype's ratio, else None."""
    total = sum(p.cations)
    if len(cations) == 1:  # one cation on every cation role: AO, AO2, A2O3, A3O4 (spinel)
        ((el, n),) = cations.items()
        if n * p.oxygens == oxygens * total:
            return {r: el for r in "AB"[: len(p.cations)]}
        return None
    if len(cations) != len(p.cations):
        return None
    unit = oxygens / p.oxygens
    (e1, n1), (e2, n2) = sorted(cations.items(), key=lambda kv: (kv[1], kv[0]))
    a, b = p.cations
    if (n1, n2) != (a * unit, b * unit) or unit != int(unit):
        return None
    if a != b:  # the role with fewer sites takes the element with fewer atoms
        return {"A": e1, "B": e2}
    whole = formula_of(cations) + f"{ANION}{oxygens}"
    big, small = sorted((e1, e2), key=lambda e: (-ionic_radius(e, whole), e))
    return {"A": big, "B": small}  # perovskite: the larger cation on the 12-fold A site


def formula_of(cations: Mapping[str, int]) -> str:
    return "".join(f"{e}{n}" for e, n in sorted(cations.items()))


@cache
def _oxidation_states(formula: str) -> dict[str, float]:
    from pymatgen.core import Composition

    guesses = Composition(formula).oxi_state_guesses(max_sites=-20)
    return {str(k): float(v) for k, v in guesses[0].items()} if guesses else {}


def ionic_radius(element: str, formula: str) -> float:
    """The element's ionic radius in the compound (A), from its likeliest oxidation state
    there, else its average ionic radius, else its atomic radius."""
    from pymatgen.core import Element, Species

    oxi = _oxidation_states(formula).get(element)
    with warnings.catch_warnings():  # mixed valence (Fe 8/3+) and spin: pymatgen warns
        warnings.simplefilter("ignore")
        if oxi:
            with contextlib.suppress(ValueError, KeyError):
                r = Species(element, oxi).ionic_radius
                if r:
                    return float(r)
        r = Element(element).average_ionic_radius
        if r:
            return float(r)
        return float(Element(element).atomic_radius or 1.5)


def structure(formula: str) -> tuple[Any, Prototype, float]:
    """(primitive pymatgen Structure, its prototype, the scale applied to the reference
    cell) for an oxide formula. Raises :class:`NoPrototype`, saying why."""
    from pymatgen.core import Structure

    p, roles = match(formula)
    ref_formula = _formula_from_roles(p, p.reference)
    new_formula = _formula_from_roles(p, roles)
    r_o_ref, r_o_new = ionic_radius(ANION, ref_formula), ionic_radius(ANION, new_formula)
    ratios = [
        (ionic_radius(roles[r], new_formula) + r_o_new)
        / (ionic_radius(p.reference[r], ref_formula) + r_o_ref)
        for r, n in zip("AB", p.cations, strict=False)
        for _ in range(n)
    ]
    scale = sum(ratios) / len(ratios)
    lattice = p.lattice()
    lattice = lattice.scale(lattice.volume * scale**3)
    species = [ANION if role == ANION else roles[role] for role, _ in p.sites]
    cell = Structure.from_spacegroup(p.space_group, lattice, species, [c for _, c in p.sites])
    return cell.get_primitive_structure(), p, scale


def _formula_from_roles(p: Prototype, roles: Mapping[str, str]) -> str:
    counts: dict[str, int] = {}
    for role, n in zip("AB", p.cations, strict=False):
        counts[roles[role]] = counts.get(roles[role], 0) + n
    return formula_of(counts) + f"{ANION}{p.oxygens}"
