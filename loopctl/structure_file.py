"""Crystal structure files named by a pool's rows (CIF, POSCAR), read with pymatgen.

Shared by the campaign reader (which checks every file when the campaign is read, and takes
the formula the model sees from it) and the CHGNet oracle (which relaxes the structure), so
that both resolve a path the same way and fail with the same words: the file, and why.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from loopctl.errors import LoopctlError


class StructureFileError(LoopctlError):
    """A structure file that cannot be found or read; the message names the file."""


def resolve(text: str, base: str | Path | None) -> Path:
    """``text`` as a path: relative ones to ``base`` (the campaign file's folder) when there
    is one, else to the working directory, as for ``pool.file`` and ``oracle.table``."""
    path = Path(text).expanduser()
    if not path.is_absolute():
        path = (Path(base) if base else Path.cwd()) / path
    return path


def read_structure(text: str, base: str | Path | None) -> tuple[Any, Path, str]:
    """(pymatgen Structure, resolved path, sha256 of the file's bytes); the digest is of the
    bytes read, so a result's provenance names exactly the file that was relaxed."""
    path = resolve(text, base)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise StructureFileError(
            f"structure file {text!r}: cannot read {path}: {exc.strerror or exc}"
        ) from None
    from pymatgen.core import Structure

    try:
        structure = Structure.from_file(str(path))
    except Exception as exc:  # pymatgen raises many types for files it cannot parse
        kind = type(exc).__name__
        raise StructureFileError(
            f"structure file {text!r} ({path}) is not a structure pymatgen can read "
            f"(CIF or POSCAR): {kind}: {exc}"
        ) from None
    structure.remove_oxidation_states()  # a CIF may give Mg2+: the element is what counts
    if len(structure) == 0 or not structure.is_ordered:
        raise StructureFileError(
            f"structure file {text!r} ({path}): needs an ordered structure with atoms "
            "(no partial occupancies)"
        )
    return structure, path, hashlib.sha256(data).hexdigest()
