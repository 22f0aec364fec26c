"""A pool of structure files (CIF, POSCAR): the reader takes each row's formula from its
file and names the file and the row when one cannot be read; the CHGNet oracle relaxes the
file's own cell and records which file it was (its sha256); a short campaign runs from the
command line. Relaxations are capped at a few steps to keep the file short."""

from __future__ import annotations

import csv
import hashlib
import io
import math
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from loopctl.drivers.base import TrialFailed
from loopctl.drivers.oracle_models import OracleConfigError, build_oracle
from loopctl.errors import SpecError
from loopctl.spec import load_spec
from tests.conftest import CAMPAIGNS, loopctl

EXAMPLE = CAMPAIGNS / "structure-chgnet.yaml"
FILES = CAMPAIGNS / "structures"
PARAMS = [{"name": "compound", "type": "formula"}, {"name": "structure", "type": "structure"}]
FAST = {"steps": 5, "base_dir": str(CAMPAIGNS)}


def _campaign(tmp: Path, rows: list[dict[str, Any]]) -> Path:
    """The example campaign with other pool rows, beside a copy of the shipped files."""
    shutil.copytree(FILES, tmp / "structures")
    spec = yaml.safe_load(EXAMPLE.read_text())
    spec["pool"] = {"rows": rows}
    path = tmp / "campaign.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_each_rows_formula_comes_from_its_structure_file_and_is_stored() -> None:
    from loopctl.space import Space

    spec = load_spec(EXAMPLE)
    assert spec.pool is not None
    got = {row["structure"]: row["compound"] for row in spec.pool.rows}
    assert got == {
        "structures/MgO-rocksalt.cif": "MgO",
        "structures/CeO2-fluorite.cif": "CeO2",
        "structures/POSCAR.CuZn-B2": "ZnCu",
    }
    # the database keeps the formulas, so a resume does not depend on reading them again
    assert [r["compound"] for r in spec.raw["pool"]["rows"]] == list(got.values())
    # models see the formula's descriptors; the path adds no column of its own
    space = Space(spec.space, pool=spec.pool)
    assert space.pool_x.shape == (3, 28) and len({tuple(x) for x in space.pool_x}) == 3


def test_a_missing_or_unreadable_structure_file_names_the_file_and_the_row(
    tmp_path: Path,
) -> None:
    path = _campaign(
        tmp_path,
        [
            {"structure": "structures/MgO-rocksalt.cif"},
            {"structure": "structures/missing.cif"},
            {"structure": "structures/garbage.cif"},
            {"structure": "structures/POSCAR.CuZn-B2", "compound": "Cu3Zn"},
        ],
    )
    (tmp_path / "structures" / "garbage.cif").write_text("this is not a crystal\n")
    r = loopctl("validate", str(path), check=False)
    assert r.returncode != 0
    out = r.stdout + r.stderr
    assert "pool row 2: structure file 'structures/missing.cif': cannot read" in out
    assert "No such file or directory" in out
    assert "pool row 3: structure file 'structures/garbage.cif'" in out
    assert "is not a structure pymatgen can read (CIF or POSCAR)" in out
    assert "pool row 4: compound 'Cu3Zn' is not the composition of structure file" in out
    with pytest.raises(SpecError, match=re.escape("pool row 2: structure file")):
        load_spec(path)


def test_a_structure_parameter_needs_a_formula_beside_it(tmp_path: Path) -> None:
    path = _campaign(tmp_path, [{"structure": "structures/MgO-rocksalt.cif"}])
    spec = yaml.safe_load(path.read_text())
    spec["space"] = [{"name": "structure", "type": "structure"}]
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(SpecError, match="needs exactly one formula parameter beside it"):
        load_spec(path)


def test_structures_relax_reproducibly_with_the_file_in_their_provenance() -> None:
    pytest.importorskip("chgnet")
    f = build_oracle(
        "chgnet",
        objectives=["formation_energy", "e_above_hull"],
        parameters=PARAMS,
        options={**FAST, "hull_formulas": ["MgO"]},
    )
    mgo: Any = f({"compound": "MgO", "structure": "structures/MgO-rocksalt.cif"})
    cuzn: Any = f({"compound": "ZnCu", "structure": "structures/POSCAR.CuZn-B2"})
    again: Any = f({"compound": "MgO", "structure": "structures/MgO-rocksalt.cif"})
    assert mgo == pytest.approx(again, abs=1e-6) and mgo.metadata == again.metadata
    for out in (mgo, cuzn):
        assert all(math.isfinite(v) for v in out.values()), out
    assert -5 < mgo["formation_energy"] < -1.5  # an oxide is strongly bound
    assert -0.5 < cuzn["formation_energy"] < 0.2  # an alloy barely
    # MgO's hull in Mg-O holds the oracle's own rocksalt MgO: the same structure, ~0
    assert abs(mgo["e_above_hull"]) < 0.02
    assert cuzn["e_above_hull"] == pytest.approx(cuzn["formation_energy"], abs=1e-6)
    meta: dict[str, Any] = cuzn.metadata
    digest = hashlib.sha256((FILES / "POSCAR.CuZn-B2").read_bytes()).hexdigest()
    assert meta["structure_file"] == "structures/POSCAR.CuZn-B2"
    assert meta["structure_sha256"] == digest
    assert meta["simulated_cell"] == "Cu1 Zn1" and meta["prototype"] == "file"
    assert meta["model_version"] == "0.3.0" and meta["relax_step_cap"] == 5
    assert meta["fmax"] == 0.05 and 0 <= meta["relax_steps"] <= 5


def test_a_file_gone_or_changed_since_the_campaign_was_read_fails_the_trial(
    tmp_path: Path,
) -> None:
    pytest.importorskip("chgnet")
    shutil.copy(FILES / "MgO-rocksalt.cif", tmp_path / "x.cif")
    f = build_oracle(
        "chgnet",
        objectives=["formation_energy"],
        parameters=PARAMS,
        options={"steps": 5, "base_dir": str(tmp_path)},
    )
    with pytest.raises(TrialFailed, match=re.escape("structure file 'gone.cif': cannot read")) as e:
        f({"compound": "MgO", "structure": "gone.cif"})
    assert not e.value.retryable
    with pytest.raises(TrialFailed, match="now holds MgO, not CeO2: it changed after"):
        f({"compound": "CeO2", "structure": "x.cif"})
    with pytest.raises(OracleConfigError, match="mixing_energy is defined for the oracle's"):
        build_oracle("chgnet", objectives=["mixing_energy"], parameters=PARAMS, options=FAST)


def test_the_structure_example_campaign_runs_from_the_command_line(tmp_path: Path) -> None:
    """campaigns/structure-chgnet.yaml, shortened to five steps a relaxation."""
    pytest.importorskip("chgnet")
    spec = yaml.safe_load(EXAMPLE.read_text())
    spec["oracle"]["options"]["steps"] = 5
    short = tmp_path / "structures.yaml"
    short.write_text(yaml.safe_dump(spec))
    shutil.copytree(FILES, tmp_path / "structures")
    assert "structure: structure a structure file" in loopctl("validate", str(EXAMPLE)).stdout
    db = tmp_path / "s.db"
    loopctl("start", str(short), "--db", str(db), timeout=150)
    rows = list(csv.DictReader(io.StringIO(loopctl("export", str(db)).stdout)))
    assert sorted(r["compound"] for r in rows) == ["CeO2", "MgO", "ZnCu"], rows
    for row in rows:
        file = tmp_path / row["structure"]
        assert row["structure_sha256"] == hashlib.sha256(file.read_bytes()).hexdigest()
        assert math.isfinite(float(row["formation_energy"])) and row["model_version"] == "0.3.0"
    # the database keeps the formulas: reading the campaign back does not need the files
    shutil.rmtree(tmp_path / "structures")
    assert len(list(csv.DictReader(io.StringIO(loopctl("export", str(db)).stdout)))) == 3
    loopctl("audit", "--replay", str(db))
    loopctl("status", str(db))


def test_polymorphs_of_one_formula_are_candidates_the_model_cannot_tell_apart(
    tmp_path: Path,
) -> None:
    """Two files of MgO (rocksalt, CsCl-type) encode alike; the strategy still proposes each
    row once, through the initial design and the model after it, and stops at the pool."""
    from pymatgen.core import Lattice, Structure

    from loopctl import Campaign

    coords = [[0.0, 0.0, 0.0], [0.5, 0.5, 0.5]]
    Structure(Lattice.cubic(2.6), ["Mg", "O"], coords).to(filename=str(tmp_path / "MgO-B2.cif"))
    files = [str(tmp_path / "MgO-B2.cif"), *(str(p) for p in sorted(FILES.iterdir()))]
    c = Campaign.create(
        {
            "name": "polymorphs",
            "seed": 3,
            "space": PARAMS,
            "objectives": [{"name": "e", "goal": "minimize"}],
            "budget": {"trials": 4},
            "strategy": {"initial_trials": 2},
            "pool": {"rows": [{"structure": f} for f in files]},
        }
    )
    energy = dict(zip(files, (-2.9, -4.0, -3.1, -0.1), strict=True))
    seen = []
    for _ in range(4):
        (t,) = c.ask(1)
        seen.append(t.parameters["structure"])
        c.tell(t.id, {"e": energy[t.parameters["structure"]]})
    assert sorted(seen) == sorted(files)
    assert sorted(t["parameters"]["compound"] for t in c.trials()) == [
        "CeO2",
        "MgO",
        "MgO",
        "ZnCu",
    ]
