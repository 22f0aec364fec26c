"""Backtest scenarios for every public dataset in ../shared/data (bench/backtest_all.py).

A scenario is a campaign spec (a dict, written as YAML by :func:`write_campaign`),
the CSV of measured outcomes it is scored against, and the mapping of campaign
names to CSV columns where they differ (``loopctl backtest --column NAME=COLUMN``).
None of the data lives in this repository: the files are read from DATA when
:func:`scenarios` is first called, and a missing DATA folder gives no scenarios.

How each dataset becomes a space (see each folder's PROVENANCE.md):

- continuous inputs: ``range`` bounded by the data's min and max (every row, as
  the backtest checks every row against the space, measured or not);
- discrete numeric levels: ``integer`` when every level is a whole number, else
  ``range``; categorical inputs: ``choice`` over the distinct values;
- compounds (CAMD): a ``formula`` parameter over a pool of the distinct formulas,
  which loopctl describes to its models by 28 element-property descriptors. The
  ready-made Magpie feature columns (271 in test_df.csv, 132 in the band-gap
  file) are not used: loopctl has no parameter type for precomputed descriptors
  of a pool row, and one ``range`` per feature would give a 132- or
  271-dimensional GP that knows nothing of chemistry;
- no pool is given for the other sets: the backtest pools every distinct row of
  the CSV, replicates averaged. The Liang et al. sets use the ``*_pool.csv``
  files (their protocol's pooling: the mean of distinct measured values).

The objective is always one: where the source has several, the primary one (the
first the README/PROVENANCE lists, or the one it names) and the family is
``multiobjective-as-single``. Four sets cannot be read as shipped; their
tables are rewritten by :func:`write_campaign` into the output folder: Summit's
files (a second ``TYPE,DATA`` row; benzamide's censored "≥90%" yields),
vapdiff_crystal (an ordinal text score, made 0-3) and the CAMD band gaps (a
target window, made a distance to minimise).
"""

from __future__ import annotations

import csv
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

FAMILIES = (
    "liang_pool",
    "olympus_continuous",
    "olympus_categorical",
    "mixed",
    "composition/camd",
    "multiobjective-as-single",
)
MAX_BUDGET = 100  # default cycles: min(pool size, 100)
INITIAL = 2  # Liang et al.'s protocol: two random points, then the model

Rows = list[dict[str, str]]

# Datasets, members or files left out, and why.
SKIPPED: dict[str, str] = {
    "summit_experimental_reactions/baumgartner_aniline_cn_crosscoupling_with_cost.csv": (
        "the same 96 experiments as baumgartner_aniline_cn_crosscoupling.csv (scenario "
        "baumgartner_aniline) plus a derived cost_usd; as one objective it is either that "
        "scenario again (yld) or cost_usd, a closed-form function of catalyst, base and "
        "equivalents (Summit's cost model), not a measurement; it only makes sense as the "
        "2-objective problem, which a single-objective backtest cannot score"
    ),
    "camd_bandgap_multifidelity (DFT rows)": (
        "loopctl has no notion of fidelity or query cost, so the multi-fidelity search CAMD "
        "runs (cheap DFT gaps guiding expensive experiments) cannot be expressed; scenario "
        "camd_bandgap uses the 150 experimental gaps only"
    ),
    "jain2024_acrylate_photopolymers/Active_Learning_Thermosets.csv": (
        "the verbatim file quotes thousands separators ('1,028.00') that the backtest cannot "
        "read as numbers; Active_Learning_Thermosets_clean.csv (the same table, parsed) is "
        "used instead (scenario acrylate_stress)"
    ),
    "camd_oqmd_formation_energy/test_df.csv": (
        "the same 1000 compounds as oqmd_formation_energy_slim.csv with 271 precomputed "
        "features; the scenario (camd_oqmd_formation) uses the slim file and a formula "
        "parameter (loopctl's own element-property descriptors) instead of the features"
    ),
    "descriptor tables (olympus_suzuki_edbo/descriptors_dft.csv, olympus_perovskites/"
    "descriptors.csv, olympus_vapdiff_crystal/descriptors.csv)": (
        "per-option descriptors of categorical inputs, not datasets; a loopctl choice is a "
        "category to its GP and takes no descriptors"
    ),
    "noise_scales.csv files (Olympus)": (
        "Olympus's per-row noise levels for simulated look-ups, not measurements; a backtest "
        "answers with the measured value itself"
    ),
}


@dataclass(frozen=True)
class Input:
    """A parameter: its campaign name, its CSV column and how to read it.

    kind: ``range`` (continuous), ``level`` (discrete numeric levels: ``integer``
    when all are whole numbers, else ``range``), ``choice`` or ``formula``.
    """

    name: str
    column: str
    kind: str = "range"
    unit: str | None = None


@dataclass(frozen=True)
class Dataset:
    key: str
    family: str
    folder: str
    file: str
    inputs: tuple[Input, ...]
    objective: str  # campaign name
    column: str  # its CSV column
    goal: str
    unit: str | None = None
    grid_sampled: bool = False  # PROVENANCE: a full factorial / every combination measured
    others: tuple[str, ...] = ()  # the source's other objectives, left out here
    note: str = ""
    transform: Callable[[Rows], Rows] | None = None  # when the file cannot be read as is


@dataclass(frozen=True)
class Scenario:
    """One backtest: the campaign, the measurements and how their columns are named."""

    key: str
    family: str
    spec: dict[str, Any]  # the campaign file's content
    csv: Path  # the measurements as shipped (see ``derived``)
    columns: dict[str, str]  # campaign name -> CSV column, where they differ
    n_candidates: int  # distinct measured inputs (replicates averaged)
    objective: str
    goal: str
    inputs: dict[str, list[str]]  # parameter type -> names
    grid_sampled: bool
    others: tuple[str, ...]
    note: str
    source: str  # folder/file under DATA
    derived: Rows | None = field(default=None, repr=False)  # table write_campaign writes

    @property
    def budget(self) -> int:
        return min(self.n_candidates, MAX_BUDGET)

    @property
    def multiobjective(self) -> bool:
        return bool(self.others)


# ------------------------------------------------------------------ transformations


def _drop_type_row(rows: Rows) -> Rows:
    """Summit's DataSet CSVs have a second header row ``TYPE,DATA,...``."""
    return [r for r in rows if "TYPE" not in r.values()]


def _benzamide(rows: Rows) -> Rows:
    """Five yields are recorded as the text '≥90%': kept at their lower bound, 0.90."""
    out = _drop_type_row(rows)
    for r in out:
        if r["yld"].strip().startswith("≥"):
            r["yld"] = str(float(r["yld"].strip().lstrip("≥").rstrip("%")) / 100)
    return out


CRYSTAL_SCORE = {
    "clear_solution": 0,
    "fine_powder": 1,
    "small_crystallites": 2,
    "large_crystallites": 3,
}


def _crystal_score(rows: Rows) -> Rows:
    """The ordinal score as its rank, 0 (clear solution) to 3 (large crystallites)."""
    return [r | {"crystal_score": str(CRYSTAL_SCORE[r["crystal_score"].strip()])} for r in rows]


GAP_TARGET = 1.8  # eV: the centre of CAMD's window [1.6, 2.0]


def _gap_error(rows: Rows) -> Rows:
    """Experimental rows only; the objective is the distance to 1.8 eV."""
    return [
        r | {"gap_error": repr(abs(float(r["bandgap"]) - GAP_TARGET))}
        for r in rows
        if float(r["expt_data"]) == 1
    ]


# ------------------------------------------------------------------ the datasets


def _liang(
    key: str,
    folder: str,
    file: str,
    inputs: Sequence[tuple[str, str, str | None]],
    objective: tuple[str, str, str, str | None],
    note: str,
) -> Dataset:
    name, column, goal, unit = objective
    return Dataset(
        key,
        "liang_pool",
        folder,
        file,
        tuple(Input(n, c, "range", u) for n, c, u in inputs),
        name,
        column,
        goal,
        unit,
        note=note,
    )


def _plain(names: str, kind: str = "range") -> tuple[Input, ...]:
    """Inputs whose CSV column is a valid campaign name already."""
    return tuple(Input(n, n, kind) for n in names.split())


def _olympus(
    key: str,
    folder: str,
    inputs: tuple[Input, ...],
    objective: str,
    goal: str,
    unit: str | None = None,
    file: str = "data.csv",
    family: str = "olympus_continuous",
    **kw: Any,
) -> Dataset:
    return Dataset(key, family, folder, file, inputs, objective, objective, goal, unit, **kw)


def _reizman(case: str) -> Dataset:
    return _olympus(
        f"reizman_{case}",
        "olympus_suzuki_reizman",
        (
            Input("ligand", "ligand", "choice"),
            Input("res_time", "res_time", "range", "s"),
            Input("temperature", "temperature", "level", "degC"),
            Input("catalyst_loading", "catalyst_loading", "range", "mol%"),
        ),
        "yield",
        "maximize",
        "%",
        file=f"suzuki_{case}.csv",
        family="multiobjective-as-single",
        others=("turnover",),
        note="primary objective yield (listed first; TON maximised by Olympus, minimised by "
        "Summit); same experiments as summit_reizman without the P2-L1 catalyst",
    )


def _summit_reizman(case: int) -> Dataset:
    return Dataset(
        f"summit_reizman_{case}",
        "multiobjective-as-single",
        "summit_experimental_reactions",
        f"reizman_suzuki_case_{case}.csv",
        (
            Input("catalyst", "catalyst", "choice"),
            Input("t_res", "t_res", "range", "s"),
            Input("temperature", "temperature", "level", "degC"),
            Input("catalyst_loading", "catalyst_loading", "range", "mol%"),
        ),
        "yld",
        "yld",
        "maximize",
        "%",
        others=("ton",),
        note="primary objective yld (TON: Summit minimises, Olympus maximises); Olympus's "
        "reizman set plus the rows of an 8th catalyst, P2-L1",
        transform=_drop_type_row,
    )


def _baumgartner(key: str, file: str, transform: Callable[[Rows], Rows], note: str) -> Dataset:
    return Dataset(
        key,
        "mixed",
        "summit_experimental_reactions",
        file,
        (
            Input("catalyst", "catalyst", "choice"),
            Input("base", "base", "choice"),
            Input("base_equivalents", "base_equivalents", "range"),
            Input("temperature", "temperature", "level", "degC"),
            Input("t_res", "t_res", "range", "s"),
        ),
        "yld",
        "yld",
        "maximize",
        "fraction",
        note=note,
        transform=transform,
    )


def _datasets() -> list[Dataset]:
    out = [
        # --- Liang et al. 2021: the *_pool.csv files; every objective as the paper states it
        _liang(
            "liang_p3ht",
            "liang2021_p3ht_cnt",
            "P3HT_pool.csv",
            [
                ("p3ht", "P3HT content (%)", "%"),
                ("d1", "D1 content (%)", "%"),
                ("d2", "D2 content (%)", "%"),
                ("d6", "D6 content (%)", "%"),
                ("d8", "D8 content (%)", "%"),
            ],
            ("conductivity", "Conductivity (measured) (S/cm)", "maximize", "S/cm"),
            "a 5-component mixture (sums to 100 within 0.11) taken, as in the paper, as 5 "
            "independent ranges; collected along a BO campaign",
        ),
        _liang(
            "liang_agnp",
            "liang2021_agnp",
            "AgNP_pool.csv",
            [
                ("q_agno3", "QAgNO3(%)", "%"),
                ("q_pva", "Qpva(%)", "%"),
                ("q_tsc", "Qtsc(%)", "%"),
                ("q_seed", "Qseed(%)", "%"),
                ("q_tot", "Qtot(uL/min)", "uL/min"),
            ],
            ("loss", "loss", "minimize", None),
            "pool of 164 from 3295 measurements (mean of distinct values)",
        ),
        _liang(
            "liang_perovskite",
            "liang2021_perovskite",
            "Perovskite_pool.csv",
            [("cs", "CsPbI", None), ("fa", "FAPbI", None), ("ma", "MAPbI", None)],
            ("instability", "Instability index", "minimize", None),
            "fractions sum to 1 within 0.01 only, so three ranges, not a composition (which "
            "must sum to 1 within 1e-6); the most intrinsic acceleration of the four",
        ),
        _liang(
            "liang_autoam",
            "liang2021_autoam",
            "AutoAM_pool.csv",
            [
                ("prime_delay", "Prime Delay", "s"),
                ("print_speed", "Print Speed", "mm/s"),
                ("x_offset", "X Offset Correction", "mm"),
                ("y_offset", "Y Offset Correction", "mm"),
            ],
            ("score", "Score", "maximize", None),
            "no replicates: raw file and pool are the same 100 rows",
        ),
        # --- Olympus, continuous (discrete levels where the data have them)
        _olympus(
            "olympus_alkox",
            "olympus_alkox",
            (
                Input("catalase", "catalase", "level", "uM"),
                Input("peroxidase", "peroxidase", "level", "uM"),
                Input("alcohol_oxidase", "alcohol_oxidase", "level", "nM"),
                Input("ph", "ph", "level"),
            ),
            "conversion",
            "maximize",
            note="every row twice (104 conditions); 3-4 levels per factor, 104 of the "
            "3x3x4x3 = 108 combinations (PROVENANCE does not call it a grid); values up to 106",
        ),
        _olympus(
            "olympus_benzylation",
            "olympus_benzylation",
            _plain("flow_rate ratio solvent temperature"),
            "impurity",
            "minimize",
            "%",
            note="the study is bi-objective, but only impurity is shipped",
        ),
        _olympus(
            "olympus_colors_bob",
            "olympus_colors_bob",
            _plain("red orange yellow blue green"),
            "difference_to_green",
            "minimize",
            note="amounts not normalised (row sums 0.64-4.40), taken as 5 independent ranges",
        ),
        _olympus(
            "olympus_colors_n9",
            "olympus_colors_n9",
            _plain("red green blue"),
            "difference_to_green",
            "minimize",
        ),
        _olympus(
            "olympus_fullerenes",
            "olympus_fullerenes",
            _plain("reaction_time sultine temperature", "level"),
            "product",
            "maximize",
            "mole fraction",
            grid_sampled=True,
            note="6x6x6 full-factorial grid with replicates",
        ),
        _olympus(
            "olympus_hplc",
            "olympus_hplc",
            _plain("sample_loop additional_volume tubing_volume sample_flow push_speed wait_time"),
            "peak_area",
            "maximize",
            note="many zero peak areas (failed injections)",
        ),
        _olympus(
            "olympus_photo_pce10",
            "olympus_photo_pce10",
            _plain("mat_1 mat_2 mat_3 mat_4"),
            "degradation",
            "minimize",
            note="a 4-material simplex (not elements, so no composition): four ranges",
        ),
        _olympus(
            "olympus_photo_wf3",
            "olympus_photo_wf3",
            _plain("mat_1 mat_2 mat_3 mat_4"),
            "degradation",
            "minimize",
            note="a 4-material simplex (not elements, so no composition): four ranges",
        ),
        _olympus(
            "olympus_snar",
            "olympus_snar",
            _plain("residence_time ratio concentration temperature"),
            "impurity",
            "minimize",
            note="the column holds the E-factor",
        ),
        _olympus(
            "olympus_suzuki",
            "olympus_suzuki",
            _plain("temperature pd_mol arbpin k3po4", "level"),
            "yield",
            "maximize",
            "%",
            note="4 levels per factor, 247 rows of the 256 combinations (PROVENANCE does not "
            "call it a grid)",
        ),
        # --- Olympus, categorical look-up tables: every combination computed or measured
        *[
            _olympus(
                f"buchwald_{m}",
                "olympus_buchwald",
                _plain("aryl_halide additive base ligand", "choice"),
                "yield",
                "maximize",
                "%",
                file=f"buchwald_{m}.csv",
                family="olympus_categorical",
                grid_sampled=True,
                note="full 3x22x3x4 factorial",
            )
            for m in "abcde"
        ],
        _olympus(
            "suzuki_edbo",
            "olympus_suzuki_edbo",
            _plain("electrophile nucleophile base ligand solvent", "choice"),
            "yield",
            "maximize",
            "%",
            family="olympus_categorical",
            grid_sampled=True,
            note="full 4x3x7x11x4 factorial",
        ),
        _olympus(
            "perovskites_hse",
            "olympus_perovskites",
            _plain("organic cation anion", "choice"),
            "hse_gap",
            "minimize",
            "eV",
            family="olympus_categorical",
            grid_sampled=True,
            note="DFT (HSE06) for all 16x3x4 combinations; minimised as Olympus does (a target "
            "gap would be more natural); organic cations are names, not formulas",
        ),
        # --- mixed categorical and continuous
        _olympus(
            "vapdiff_crystal",
            "olympus_vapdiff_crystal",
            (
                Input("organic", "organic", "choice"),
                Input("organic_molarity", "organic_molarity", "range", "mol/L"),
                Input("solvent", "solvent", "choice"),
                Input("solvent_molarity", "solvent_molarity", "range", "mol/L"),
                Input("inorganic_molarity", "inorganic_molarity", "range", "mol/L"),
                Input("acid_molarity", "acid_molarity", "range", "mol/L"),
                Input("alpha_vial_volume", "alpha_vial_volume", "range", "L"),
                Input("beta_vial_volume", "beta_vial_volume", "level", "L"),
                Input("reaction_time", "reaction_time", "level", "s"),
                Input("reaction_temperature", "reaction_temperature", "level", "degC"),
            ),
            "crystal_score",
            "maximize",
            family="mixed",
            note="ordinal score as a number 0-3 (clear solution, fine powder, small, large "
            "crystallites), maximised; 357 of 918 rows tie at the best level, so the top 5 % "
            "(46) is 46 of them picked by row order: read regret, not Top%",
            transform=_crystal_score,
        ),
        _baumgartner(
            "baumgartner_aniline",
            "baumgartner_aniline_cn_crosscoupling.csv",
            _drop_type_row,
            "Summit's C-N coupling (aniline); the TYPE row dropped",
        ),
        _baumgartner(
            "baumgartner_benzamide",
            "baumgartner_benzamide_cross_coupling.csv",
            _benzamide,
            "the TYPE row dropped; five yields recorded as '≥90%' (PROVENANCE says one) are "
            "set to their lower bound 0.90, so the top 5 % (3 rows) may miss some of them",
        ),
        # --- several objectives in the source: the primary one only
        _olympus(
            "dye_lasers",
            "olympus_dye_lasers",
            _plain("frag_a frag_b frag_c", "choice"),
            "peak_score",
            "maximize",
            family="multiobjective-as-single",
            grid_sampled=True,
            others=("spectral_overlap", "fluo_rate"),
            note="primary objective peak_score (Olympus lists the objectives by decreasing "
            "importance); all 14x13x19 pentamers computed",
        ),
        *[_reizman(c) for c in ("i", "ii", "iii", "iv")],
        *[_summit_reizman(c) for c in (1, 2, 3, 4)],
        _olympus(
            "lnp3",
            "olympus_lnp3",
            (
                Input("drug_input", "drug_input", "level"),
                Input("solid_lipid", "solid_lipid", "choice"),
                Input("solid_lipid_input", "solid_lipid_input", "level"),
                Input("liquid_lipid_input", "liquid_lipid_input", "level"),
                Input("surfractant_input", "surfractant_input", "level"),
            ),
            "drug_loading",
            "maximize",
            "fraction",
            family="multiobjective-as-single",
            grid_sampled=True,
            others=("encap_efficiency", "particle_diameter"),
            note="primary objective drug_loading (listed first); 4x3x4x4x4 grid; source "
            "publication not identified",
        ),
        Dataset(
            "acrylate_stress",
            "multiobjective-as-single",
            "jain2024_acrylate_photopolymers",
            "Active_Learning_Thermosets_clean.csv",
            _plain("IDA IBOA PEGDA"),
            "peak_stress",
            "Peak Stress",
            "maximize",
            "MPa",
            others=("Young Mod", "Peak Strain", "Hardness"),
            note="directions not stated; PROVENANCE suggests max Peak Stress and max Peak "
            "Strain: Peak Stress (strength) taken; 3-monomer simplex as three ranges; a row "
            "without a stress value is left out",
        ),
        # --- compounds: a formula parameter over a pool of the distinct formulas
        Dataset(
            "camd_oqmd_formation",
            "composition/camd",
            "camd_oqmd_formation_energy",
            "oqmd_formation_energy_slim.csv",
            (Input("composition", "Composition", "formula"),),
            "delta_e",
            "delta_e",
            "minimize",
            "eV/atom",
            note="997 formulas; the 3 listed twice (polymorphs) are averaged like replicates",
        ),
        Dataset(
            "camd_bandgap",
            "composition/camd",
            "camd_bandgap_multifidelity",
            "test_multi_fidelity_df.csv",
            (Input("formula", "reduced_formula", "formula"),),
            "gap_error",
            "gap_error",
            "minimize",
            "eV",
            note="experimental gaps only; CAMD's target window [1.6, 2.0] eV as |gap - 1.8 eV|, "
            "minimised (3 compounds lie in the window)",
            transform=_gap_error,
        ),
    ]
    return out


# ------------------------------------------------------------------ building scenarios


def _read(path: Path) -> Rows:
    with path.open(newline="", encoding="utf-8-sig") as f:  # some files start with a BOM
        return [{k: (v or "") for k, v in r.items() if k is not None} for r in csv.DictReader(f)]


def _cell(text: str) -> float | str | None:
    """As the backtest reads a cell: a number where it is one, else stripped text."""
    if not text.strip():
        return None
    try:
        return float(text)
    except ValueError:
        return text.strip()


def _parameter(inp: Input, values: list[float | str | None], where: str) -> dict[str, Any]:
    present = [v for v in values if v is not None]
    if len(present) != len(values):
        raise ValueError(f"{where}: {len(values) - len(present)} rows have no {inp.column!r}")
    spec: dict[str, Any] = {"name": inp.name}
    if inp.kind == "formula":
        return spec | {"type": "formula"}
    levels = list(dict.fromkeys(present))
    if inp.kind == "choice":
        if len(levels) < 2:
            return spec | {"type": "fixed", "value": levels[0]}
        return spec | {"type": "choice", "values": levels}
    numbers = [v for v in present if isinstance(v, float)]
    if len(numbers) != len(present):
        raise ValueError(f"{where}: column {inp.column!r} is not numeric")
    low, high = min(numbers), max(numbers)
    if low == high:
        return spec | {"type": "fixed", "value": low}
    if inp.kind == "level" and all(v == int(v) for v in numbers):
        spec |= {"type": "integer", "bounds": [int(low), int(high)]}
    else:
        spec |= {"type": "range", "bounds": [low, high]}
    if inp.unit:
        spec["unit"] = inp.unit
    return spec


def _key(value: float | str | None) -> Any:
    return round(value, 12) if isinstance(value, float) else value


def _build(d: Dataset) -> Scenario:
    path = DATA / d.folder / d.file
    raw = _read(path)
    rows = d.transform(raw) if d.transform is not None else raw
    where = f"{d.folder}/{d.file}"
    cells = [{k: _cell(v) for k, v in r.items()} for r in rows]
    space = [_parameter(i, [c.get(i.column) for c in cells], where) for i in d.inputs]
    measured = [c for c in cells if c.get(d.column) is not None]
    keys = {tuple(_key(c[i.column]) for i in d.inputs) for c in measured}
    objective: dict[str, Any] = {"name": d.objective, "goal": d.goal}
    if d.unit:
        objective["unit"] = d.unit
    spec: dict[str, Any] = {
        "name": d.key,
        "description": f"Backtest of {where} (../shared/data). {d.note}".strip(),
        "space": space,
        "objectives": [objective],
        "budget": {"trials": min(len(keys), MAX_BUDGET)},
        "strategy": {"method": "auto", "initial_trials": INITIAL},
    }
    formulas = [i for i in d.inputs if i.kind == "formula"]
    if formulas:  # a formula parameter needs a pool: the distinct measured compounds
        spec["pool"] = {
            "rows": [{i.name: c for i, c in zip(d.inputs, k, strict=True)} for k in sorted(keys)]
        }
    by_type: dict[str, list[str]] = {}
    for p in space:
        by_type.setdefault(p["type"], []).append(p["name"])
    columns = {i.name: i.column for i in d.inputs if i.name != i.column}
    if d.objective != d.column:
        columns[d.objective] = d.column
    return Scenario(
        key=d.key,
        family=d.family,
        spec=spec,
        csv=path,
        columns=columns,
        n_candidates=len(keys),
        objective=d.objective,
        goal=d.goal,
        inputs=by_type,
        grid_sampled=d.grid_sampled,
        others=d.others,
        note=d.note,
        source=where,
        derived=rows if d.transform is not None else None,
    )


@cache
def scenarios() -> dict[str, Scenario]:
    """Every scenario whose data file is present, by key; {} when DATA is missing. A file
    that no longer reads as described is left out with a warning, not fatal to the rest."""
    if not DATA.is_dir():
        return {}
    out: dict[str, Scenario] = {}
    for d in _datasets():
        if not (DATA / d.folder / d.file).is_file():
            continue
        try:
            out[d.key] = _build(d)
        except (OSError, ValueError, KeyError, csv.Error) as exc:
            warnings.warn(f"scenario {d.key} left out: {exc}", stacklevel=2)
    return out


def write_campaign(key: str, folder: str | Path) -> tuple[Path, Path, dict[str, str]]:
    """Write ``KEY.yaml`` (and, for a table that needs rewriting, ``KEY.csv``) into
    ``folder``; returns the campaign, the CSV to backtest against and the column mapping
    (campaign name -> CSV column) for ``loopctl backtest --column``."""
    s = scenarios()[key]
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    data = s.csv
    if s.derived is not None:
        data = out / f"{key}.csv"
        wanted = [s.columns.get(n, n) for n in _names(s.spec)]
        _write_csv(data, s.derived, wanted)
    campaign = out / f"{key}.yaml"
    text = yaml.safe_dump(
        s.spec, sort_keys=False, allow_unicode=True, width=100, default_flow_style=None
    )
    campaign.write_text(text, encoding="utf-8")
    return campaign, data, dict(s.columns)


def _names(spec: Mapping[str, Any]) -> list[str]:
    return [p["name"] for p in spec["space"]] + [o["name"] for o in spec["objectives"]]


def _write_csv(path: Path, rows: Rows, columns: list[str]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(columns)
        for r in rows:
            w.writerow([r.get(c, "") for c in columns])


def describe(s: Scenario) -> str:
    """Inputs by type, e.g. ``3 range, 1 choice(8)``."""
    parts = []
    for kind, names in s.inputs.items():
        if kind == "choice":
            sizes = [str(len(p["values"])) for p in s.spec["space"] if p["type"] == "choice"]
            parts.append(f"{len(names)} choice ({'/'.join(sizes)})")
        else:
            parts.append(f"{len(names)} {kind}")
    return ", ".join(parts)


_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")


def main() -> None:
    """Print the scenario table (markdown)."""
    print("| key | family | N | inputs | objective | grid | source |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for s in scenarios().values():
        bad = [n for n in _names(s.spec) if not _NAME_RE.match(n)]
        assert not bad, f"{s.key}: {bad} are not campaign names"
        print(
            f"| {s.key} | {s.family} | {s.n_candidates} | {describe(s)} | "
            f"{s.goal[:3]} {s.objective} | {'yes' if s.grid_sampled else ''} | {s.source} |"
        )


if __name__ == "__main__":
    main()
