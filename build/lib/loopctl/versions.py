"""Versions of the software that shaped a campaign, stored at creation for audits."""

from __future__ import annotations

import platform
from importlib import metadata

PACKAGES = (
    "loopctl",
    "botorch",
    "gpytorch",
    "torch",
    "numpy",
    "scipy",
    "pymatgen",
    "ase",
    "pyzmq",
    "sqlite-utils",
)


def software_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out
