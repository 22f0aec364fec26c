"""The `pool` of a campaign file: candidates from a CSV file or written out as rows, each
checked against the space when the file is read, so that problems name the row."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from loopctl.field_reader import Reader, kind_of
from loopctl.schema import field_of, keys
from loopctl.spec_types import FormulaParam, Parameter, PoolSpec, StructureParam


def read_pool(
    r: Reader, value: Any, space: list[Parameter], source: str, *, read_files: bool = True
) -> PoolSpec | None:
    """Read the candidates (CSV or inline rows) and check each against the space; with
    ``read_files``, structure files too (the stored form's rows were checked already)."""
    if value is None:
        return None
    d = r.mapping(value, "pool")
    if d is None:
        return None
    r.unknown_keys(d, "pool", keys("pool"))
    file = r.field(d, "pool", field_of("pool", "file"))
    columns = r.mapping(d.get("columns"), "pool.columns") or {}
    rows_in: list[Mapping[str, Any]]
    if d.get("rows") is not None:
        rows_in = d["rows"] if isinstance(d["rows"], list) else []
        if not rows_in:
            r.problem(
                "pool.rows", f"must be a non-empty list of candidates, got {kind_of(d['rows'])}"
            )
            return None
    elif file is not None:
        read = read_pool_csv(r, file, source)
        if read is None:
            return None
        rows_in = read
    else:
        r.problem("pool", "give `file` (a CSV of candidates) or `rows`")
        return None
    for pname, col in columns.items():
        if pname not in {p.name for p in space}:
            r.problem(f"pool.columns.{pname}", "is not a parameter of this campaign")
        elif not isinstance(col, str):
            r.problem(f"pool.columns.{pname}", f"must be a column name, got {kind_of(col)}")
    if r.problems:
        return None
    # Space imports numpy (and it is a third of `loopctl validate`'s start): only pools need it
    from loopctl.errors import ValidationError
    from loopctl.space import Space

    check = Space(space)
    rename = {col: pname for pname, col in columns.items()}
    structure = _structure_pair(space) if read_files else None
    base = Path(source).resolve().parent if Path(source).is_file() else None
    rows: list[Mapping[str, Any]] = []
    seen: dict[tuple[Any, ...], int] = {}
    bad = 0
    for i, row in enumerate(rows_in):
        where = f"pool row {i + 2 if file and d.get('rows') is None else i + 1}"
        if not isinstance(row, Mapping):
            r.problem(where, f"must be a mapping of parameter values, got {kind_of(row)}")
            return None
        named = {rename.get(k, k): v for k, v in row.items()}
        try:
            if structure is not None:
                named = _with_formula(named, structure, base, where)
            values = check.validate(check.unflat(named, where), where)
        except ValidationError as exc:
            bad += 1
            if bad <= 5:
                r.problem("pool", str(exc))
            continue
        key = check.key(values)
        if key in seen:
            r.problem(where, f"repeats candidate {seen[key]}; a pool lists each candidate once")
            continue
        seen[key] = i + 1
        rows.append(values)
    if bad > 5:
        r.problem("pool", f"... and {bad - 5} more rows with problems")
    if len(rows) < 2 and not r.problems:
        r.problem("pool", "needs at least two candidates")
    return PoolSpec(tuple(rows), file)


def _structure_pair(space: list[Parameter]) -> tuple[str, str] | None:
    """(structure parameter, formula parameter) when the space has one of each."""
    structures = [p.name for p in space if isinstance(p, StructureParam)]
    formulas = [p.name for p in space if isinstance(p, FormulaParam)]
    if len(structures) == 1 and len(formulas) == 1:
        return structures[0], formulas[0]
    return None  # loopctl.spec_reader says what is wrong


def _with_formula(
    row: dict[str, Any], pair: tuple[str, str], base: Path | None, where: str
) -> dict[str, Any]:
    """The row with its formula taken from its structure file (checked against the
    formula the row gives, if it gives one); ValidationError names the row and the file.
    Every file is read here, so `loopctl validate` finds a missing one before any trial."""
    from loopctl.errors import ValidationError
    from loopctl.structure_file import StructureFileError, read_structure

    name, formula_name = pair
    text = row.get(name)
    if not isinstance(text, str) or not text.strip():
        return row  # the space's check says the path is missing
    try:
        structure, _, _ = read_structure(text.strip(), base)
    except StructureFileError as exc:
        raise ValidationError(f"{where}: {exc}") from None
    found = structure.composition.reduced_composition
    given = row.get(formula_name)
    if given is None or (isinstance(given, str) and not given.strip()):
        return {**row, formula_name: found.reduced_formula}
    from pymatgen.core import Composition

    try:
        same = Composition(str(given)).reduced_composition.almost_equals(found)
    except Exception:  # not a formula: the space's check says so
        return row
    if not same:
        raise ValidationError(
            f"{where}: {formula_name} {given!r} is not the composition of structure file "
            f"{text!r} ({found.reduced_formula}); leave {formula_name} out to take it from "
            "the file"
        )
    return row


def read_pool_csv(r: Reader, file: str, source: str) -> list[Mapping[str, Any]] | None:
    """The CSV's rows, numbers as floats; ``file`` is relative to the campaign file."""
    import csv  # only pool campaigns read a CSV

    path = Path(file)
    if not path.is_absolute() and Path(source).is_file():
        path = Path(source).resolve().parent / path
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:  # some CSVs start with a BOM
            reader = csv.DictReader(f)
            return [{k: _cell(v) for k, v in row.items() if k is not None} for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        r.problem("pool.file", f"cannot read {path}: {exc}")
        return None


def _cell(text: str | None) -> Any:
    """CSV text to a number where it is one; formulas and labels stay text."""
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        return text.strip()
