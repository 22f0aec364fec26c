"""Campaign files for tests: variations of the shipped examples, written to a temp dir."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import yaml

from loopctl.drivers.oracle_models import branin as _branin

ROOT = Path(__file__).resolve().parents[1]


def branin(tmp: Path, name: str = "branin.yaml", **changes: Any) -> Path:
    """campaigns/branin.yaml with top-level sections updated (dicts merged one level deep)."""
    data = yaml.safe_load((ROOT / "campaigns" / "branin.yaml").read_text())
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    path = tmp / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def branin_fn(x1: float, x2: float) -> float:
    """The value the oracle driver reports for campaigns/branin.yaml."""
    return _branin(np.array([x1, x2]))
