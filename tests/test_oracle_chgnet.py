"""The CHGNet oracle: real CHGNet (the weights its wheel ships) on 4-atom cells, so that the
file stays near a minute: reproducible energies, provenance, clear failures, and a campaign
that runs it from the command line."""

from __future__ import annotations

import csv
import io
import math
import re
from pathlib import Path
from typing import Any

import pytest

from loopctl.drivers.base import TrialFailed
from loopctl.drivers.oracle_models import OracleConfigError, build_oracle
from tests.conftest import loopctl

pytest.importorskip("chgnet")

ELEMENTS = ["Cu", "Au", "Pd"]
PARAMS = [{"name": "alloy", "type": "composition", "elements": ELEMENTS}]
SMALL = {"supercell": 1, "steps": 40}  # 4 atoms, a few seconds per composition
OBJECTIVES = ["energy_per_atom", "formation_energy", "e_above_hull"]


def oracle(objectives: list[str], **options: Any) -> Any:
    return build_oracle(
        "chgnet", objectives=objectives, parameters=PARAMS, options={**SMALL, **options}
    )


def test_three_compositions_give_finite_energies_that_a_second_run_reproduces() -> None:
    f = oracle(OBJECTIVES, hull_formulas=["CuAu"])
    comps = [{"Cu": 0.5, "Au": 0.5}, {"Cu": 0.25, "Au": 0.25, "Pd": 0.5}, {"Pd": 1.0}]
    first = [f({"alloy": c}) for c in comps]
    again = [f({"alloy": c}) for c in comps]  # relaxed again from scratch, not cached
    for a, b in zip(first, again, strict=True):
        assert set(a) == set(OBJECTIVES)
        assert all(math.isfinite(v) for v in a.values()), a
        assert a == pytest.approx(b, abs=1e-6)
        assert a.metadata == b.metadata
    cuau, mixed, pd = first
    meta = mixed.metadata
    assert meta["simulated_cell"] == "Cu1 Au1 Pd2"
    assert meta["model"] == "CHGNet 0.3.0" and meta["model_version"] == "0.3.0"
    assert meta["lattice"] == "fcc 1x1x1" and meta["fmax"] == 0.05
    assert meta["relax_step_cap"] == 40 and 0 <= meta["relax_steps"] <= 40
    assert meta["converged"] is (meta["relax_steps"] < 40)
    assert meta["mixing_energy"] == pytest.approx(mixed["formation_energy"])  # all fcc metals
    # a pure element is its own reference, and a compound on the hull is on it
    assert pd["formation_energy"] == pytest.approx(0, abs=1e-6)
    assert cuau["e_above_hull"] == pytest.approx(0, abs=1e-6)
    # unlike EMT (docs/drivers.md), CHGNet, like DFT, has Cu and Au order: CuAu forms
    assert cuau["formation_energy"] < -0.02
    assert mixed["energy_per_atom"] - mixed["formation_energy"] < 0  # the references' share


def test_formation_energy_is_against_the_ground_state_crystal_and_mixing_against_the_lattice() -> (
    None
):
    """Si is diamond: on an fcc cell its formation energy is the fcc-diamond difference
    (large, as in DFT), its mixing energy 0. Fe and Cr are bcc, the lattice asked for: the
    two agree."""
    si = build_oracle(
        "chgnet",
        objectives=["formation_energy", "mixing_energy"],
        parameters=[{"name": "alloy", "type": "composition", "elements": ["Si", "Ge"]}],
        options=SMALL,
    )({"alloy": {"Si": 1.0, "Ge": 0.0}})
    assert si["mixing_energy"] == pytest.approx(0, abs=1e-6)
    assert si["formation_energy"] > 0.2
    fecr: Any = build_oracle(
        "chgnet",
        objectives=["formation_energy", "mixing_energy"],
        parameters=[{"name": "alloy", "type": "composition", "elements": ["Fe", "Cr"]}],
        options={**SMALL, "lattice": "bcc"},
    )({"alloy": {"Fe": 0.5, "Cr": 0.5}})
    assert fecr.metadata["lattice"] == "bcc 1x1x1" and fecr.metadata["simulated_cell"] == "Fe1 Cr1"
    assert fecr["formation_energy"] == pytest.approx(fecr["mixing_energy"], abs=1e-9)


def test_an_element_the_model_has_no_embedding_for_fails_the_trial_saying_why() -> None:
    f = build_oracle(
        "chgnet",
        objectives=["formation_energy"],
        parameters=[{"name": "alloy", "type": "composition", "elements": ["Cu", "Am"]}],
        options=SMALL,
    )
    with pytest.raises(TrialFailed) as err:
        f({"alloy": {"Cu": 0.5, "Am": 0.5}})
    assert not err.value.retryable
    assert err.value.reason == "CHGNet has no embedding for Am (Z=95): it covers elements 1-94"
    assert f({"alloy": {"Cu": 1.0, "Am": 0.0}}) == {"formation_energy": pytest.approx(0, abs=1e-6)}


def test_a_relaxation_that_cannot_be_computed_fails_the_trial_saying_why() -> None:
    from loopctl.drivers.chgnet_oracle import lattice_structure, relax

    apart = lattice_structure(["Cu"] * 4, "fcc", 1, 2000.0)  # 16 A between atoms: no bonds
    with pytest.raises(TrialFailed, match=r"CHGNet relaxation of Cu failed: .*isolated atom"):
        relax(apart, model="0.3.0", steps=5, fmax=0.05)


@pytest.mark.parametrize(
    ("objectives", "options", "message"),
    [
        (["y"], {}, "cannot compute objective 'y'; name objectives energy_per_atom"),
        (["energy_per_atom"], {"model": "0.2.0"}, "model must be one of 0.3.0, r2scan"),
        (["energy_per_atom"], {"steps": 0}, "steps must be a whole number from 1 to 2000"),
        (["energy_per_atom"], {"fmax": -1}, "fmax must be a number of eV/A in (0, 1]"),
        (["energy_per_atom"], {"lattice": "hcp"}, "lattice must be fcc or bcc"),
        (["energy_per_atom"], {"relax": True}, "unknown option 'relax' for the chgnet oracle"),
        (
            ["e_above_hull"],
            {"hull_formulas": ["CuNi"]},
            "'CuNi' contains Ni, which is not one of the composition's elements (Cu, Au, Pd)",
        ),
    ],
)
def test_settings_it_cannot_honour_are_refused_before_any_trial(
    objectives: list[str], options: dict[str, Any], message: str
) -> None:
    with pytest.raises(OracleConfigError, match=re.escape(message)):
        oracle(objectives, **options)


def test_a_campaign_runs_the_chgnet_oracle_from_the_command_line(tmp_path: Path) -> None:
    spec = tmp_path / "chgnet.yaml"
    spec.write_text(
        "name: chgnet-smoke\nseed: 3\n"
        "space:\n  - {name: alloy, type: composition, elements: [Cu, Au, Pd]}\n"
        "objectives: [{name: formation_energy, goal: minimize, unit: eV/atom}]\n"
        "budget: {trials: 3}\nstrategy: sobol\nexecution: {trial_timeout: 300}\n"
        "oracle: {kind: chgnet, options: {supercell: 1, steps: 40}}\n"
        "drivers: {spawn: 1}\n"
    )
    assert "oracle: chgnet (CHGNet energies)" in loopctl("validate", str(spec)).stdout
    db = tmp_path / "c.db"
    loopctl("start", str(spec), "--db", str(db), timeout=150)
    rows = list(csv.DictReader(io.StringIO(loopctl("export", str(db)).stdout)))
    assert len(rows) == 3, rows
    again = oracle(["formation_energy"])  # this process: the same numbers as the driver's
    for row in rows:
        assert row["model_version"] == "0.3.0" and row["model"] == "CHGNet 0.3.0"
        assert row["chgnet_version"] and row["converged"] in ("True", "true", "1")
        asked = {e: float(row[f"alloy.{e}"]) for e in ELEMENTS}
        assert float(row["formation_energy"]) == pytest.approx(
            again({"alloy": asked})["formation_energy"], abs=1e-6
        )
