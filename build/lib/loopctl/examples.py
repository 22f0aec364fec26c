"""The example campaigns shipped with loopctl, found the same way from a checkout and a wheel.

The files live in the checkout's top-level ``campaigns/`` folder, where the README and the
docs link them; the wheel ships that folder as the package ``loopctl.campaigns``
(pyproject's package-dir), so that ``loopctl demo`` works without a checkout.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from loopctl.errors import LoopctlError

SUFFIXES = (".yaml", ".csv")


def _folder() -> Path:
    """The checkout's campaigns/ when loopctl runs from a checkout (editable install or
    PYTHONPATH), so that a worktree sees its own files; else the installed package's."""
    root = Path(__file__).resolve().parents[1]
    if (root / "pyproject.toml").is_file() and (root / "campaigns").is_dir():
        return root / "campaigns"
    try:
        shipped = resources.files("loopctl.campaigns")
    except ModuleNotFoundError as exc:
        raise LoopctlError(
            "the example campaigns (loopctl.campaigns) are missing from this installation"
        ) from exc
    folder = Path(str(shipped))
    if not folder.is_dir():  # a zipped install: no file for load_spec to open
        raise LoopctlError(f"the example campaigns at {shipped} are not a folder on disk")
    return folder


def example_names() -> list[str]:
    """The shipped examples' file names (campaign files and their data tables)."""
    return sorted(p.name for p in _folder().iterdir() if p.suffix in SUFFIXES)


def example_path(name: str) -> Path:
    """The path of the shipped example called ``name`` (e.g. ``alloy-mixing.yaml``)."""
    path = _folder() / name
    if path.suffix not in SUFFIXES or not path.is_file():
        raise LoopctlError(
            f"no example campaign {name!r} in {path.parent}; "
            f"the examples are: {', '.join(example_names())}"
        )
    return path
