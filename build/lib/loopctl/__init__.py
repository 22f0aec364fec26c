"""loopctl: a closed-loop active-learning experiment controller for materials research.

Importing the package is cheap (no torch): the CLI's read-only commands answer
in a fraction of a second. ``Campaign`` is loaded on first use.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

# torch's OpenMP threads and OpenBLAS threads fight over a small machine's cores
# (GP fits measured 2.4-7.5x slower); this must happen before numpy is imported.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
__all__ = ["Campaign", "Trial", "__version__"]

if TYPE_CHECKING:
    from loopctl.campaign import Campaign, Trial


def __getattr__(name: str) -> Any:
    if name in ("Campaign", "Trial"):
        from loopctl import campaign

        return getattr(campaign, name)
    raise AttributeError(name)
