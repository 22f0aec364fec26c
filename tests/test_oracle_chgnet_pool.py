"""The CHGNet oracle over a pool of formulas: oxides built from the shipped prototypes,
alloys as ordered cells, a hull per chemical system, clear failures, and a pool campaign
from the command line. Relaxations are capped at a few steps to keep the file short."""

from __future__ import annotations

import csv
import io
import math
import re
from pathlib import Path
from typing import Any

import pytest

from loopctl.drivers import prototypes
from loopctl.drivers.base import TrialFailed
from loopctl.drivers.oracle_models import OracleConfigError, build_oracle
from tests.conftest import loopctl

PARAMS = [{"name": "compound", "type": "formula"}]
FAST = {"steps": 5}


@pytest.mark.parametrize(
    ("formula", "prototype", "atoms"),
    [
        ("NiO", "rocksalt", 2),
        ("CeO2", "fluorite", 3),
        ("Fe2O3", "corundum", 10),
        ("BaTiO3", "perovskite", 5),
        ("TiBaO3", "perovskite", 5),  # the larger cation goes on the A site, whatever the order
        ("ZnAl2O4", "spinel", 14),
        ("Fe3O4", "spinel", 14),
    ],
)
def test_an_oxide_formula_becomes_its_prototype_with_bonds_scaled_by_ionic_radii(
    formula: str, prototype: str, atoms: int
) -> None:
    from pymatgen.core import Composition

    cell, proto, _ = prototypes.structure(formula)
    assert proto.name == prototype and len(cell) == atoms
    assert cell.composition.reduced_composition == Composition(formula).reduced_composition
    # every cation's nearest oxygen is about r(cation) + r(O) away: a sensible start
    whole = Composition(formula).reduced_formula
    for site in cell:
        el = site.specie.symbol
        if el == "O":
            continue
        nearest = min(
            n.nn_distance for n in cell.get_neighbors(site, 4.0) if n.specie.symbol == "O"
        )
        expected = prototypes.ionic_radius(el, whole) + prototypes.ionic_radius("O", whole)
        assert nearest == pytest.approx(expected, rel=0.2), (el, nearest, expected)
    if prototype == "perovskite":
        a_site = next(s for s in cell if s.frac_coords.tolist() == [0, 0, 0])
        assert a_site.specie.symbol == "Ba"


@pytest.mark.parametrize(
    ("formula", "message"),
    [
        ("CuFeO2", "no shipped prototype for CuFeO2; the shipped ones are rocksalt (AO)"),
        ("Mg0.5Ni0.5O", "Mg 0.5 per formula unit is not a whole number"),
        ("Cu3Au", "Cu3Au is not an oxide"),
        ("Xx2O", "'Xx2O' is not a chemical formula"),
    ],
)
def test_a_formula_without_a_prototype_is_refused_saying_why(formula: str, message: str) -> None:
    with pytest.raises(prototypes.NoPrototype, match=re.escape(message)):
        prototypes.structure(formula)


def test_oxides_from_a_pool_give_reproducible_energies_with_their_provenance() -> None:
    pytest.importorskip("chgnet")
    f = build_oracle(
        "chgnet",
        objectives=["formation_energy", "e_above_hull"],
        parameters=PARAMS,
        options={**FAST, "hull_formulas": ["MgO"]},
    )
    mgo: Any = f({"compound": "MgO"})
    bto: Any = f({"compound": "BaTiO3"})
    again: Any = f({"compound": "MgO"})
    assert mgo == pytest.approx(again, abs=1e-6) and mgo.metadata == again.metadata
    for out in (mgo, bto):
        assert all(math.isfinite(v) for v in out.values()), out
        assert -5 < out["formation_energy"] < -1.5  # oxides are strongly bound
    # MgO is the hull in Mg-O (its own entry); BaTiO3's system has no compound: the hull is
    # the elements' tie-line, so its distance is its (negative) formation energy
    assert mgo["e_above_hull"] == pytest.approx(0, abs=1e-6)
    assert bto["e_above_hull"] == pytest.approx(bto["formation_energy"], abs=1e-6)
    meta: dict[str, Any] = bto.metadata
    assert meta["prototype"] == "perovskite" and "from SrTiO3 scaled x1.03" in meta["structure"]
    assert meta["simulated_cell"] == "Ba1 Ti1 O3"
    assert meta["model"] == "CHGNet 0.3.0" and meta["relax_step_cap"] == 5
    assert meta["fmax"] == 0.05 and 0 <= meta["relax_steps"] <= 5
    assert meta["formation_references"] == "Ba bcc, O molecule, Ti hcp"
    assert "energy_per_atom" in meta  # the quantities not asked for ride along


def test_pool_formulas_it_cannot_compute_fail_the_trial_saying_why() -> None:
    pytest.importorskip("chgnet")
    f = build_oracle("chgnet", objectives=["formation_energy"], parameters=PARAMS, options=FAST)
    for formula, reason in (
        ("AmO2", "AmO2: CHGNet has no embedding for Am (Z=95)"),
        ("CuFeO2", "no shipped prototype for CuFeO2"),
        ("MgF2", "no structure for MgF2: the shipped prototypes are for oxides"),
    ):
        with pytest.raises(TrialFailed, match=re.escape(reason)) as err:
            f({"compound": formula})
        assert not err.value.retryable
    mix = build_oracle("chgnet", objectives=["mixing_energy"], parameters=PARAMS, options=FAST)
    with pytest.raises(TrialFailed, match="no mixing energy for NiO: it is defined for alloys"):
        mix({"compound": "NiO"})


def test_a_campaign_needs_one_composition_or_formula_parameter() -> None:
    with pytest.raises(OracleConfigError, match=r"one composition parameter .* or one formula"):
        build_oracle(
            "chgnet",
            objectives=["formation_energy"],
            parameters=[{"name": "x", "type": "range", "bounds": [0, 1]}],
        )


def test_the_oxide_example_campaign_runs_from_the_command_line(tmp_path: Path) -> None:
    """campaigns/oxide-chgnet.yaml, shortened: two trials, five steps each."""
    pytest.importorskip("chgnet")
    import yaml

    here = Path(__file__).resolve().parents[1] / "campaigns" / "oxide-chgnet.yaml"
    spec = yaml.safe_load(here.read_text())
    spec["budget"] = {"trials": 2}
    spec["strategy"] = {"method": "sobol"}
    spec["oracle"]["options"].update(steps=5, hull_formulas=[])
    spec["drivers"] = {"spawn": 1}
    short = tmp_path / "oxide.yaml"
    short.write_text(yaml.safe_dump(spec))
    assert "oracle: chgnet (CHGNet energies)" in loopctl("validate", str(here)).stdout
    db = tmp_path / "o.db"
    loopctl("start", str(short), "--db", str(db), timeout=150)
    rows = list(csv.DictReader(io.StringIO(loopctl("export", str(db)).stdout)))
    assert len(rows) == 2, rows
    for row in rows:
        assert row["prototype"] in prototypes.PROTOTYPES, row
        assert math.isfinite(float(row["e_above_hull"])) and row["model_version"] == "0.3.0"
