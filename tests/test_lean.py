"""A campaign's processes load only what they use: the controller's default strategy does
not bring pandas and pyarrow in with scikit-learn (65 MB of its 430 at the peak), and a
library kept out of one import is still importable afterwards. (The reading commands:
tests/test_cli.py; the figures: bench/lean.py.)"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loopctl.canonical import canonical
from loopctl.store import event_header
from tests.conftest import ENV, ROOT, scaled


def run(code: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=ENV,
        cwd=ROOT,
        timeout=scaled(120),
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip()


def test_default_strategy_loads_scikit_learn_without_pandas_or_pyarrow() -> None:
    """The auto strategy's module (GP or forest): scikit-learn is there and a forest fits
    and predicts, with neither pandas nor pyarrow loaded; pandas still imports after."""
    got = run(
        "import sys\n"
        "import numpy as np, torch\n"
        "from loopctl.strategies import botorch_gp, forest\n"
        "x = torch.rand(12, 2, dtype=torch.float64)\n"
        "y = (x ** 2).sum(1, keepdim=True)\n"
        "m = forest.ForestModel(x, y, seed=1)\n"
        "mean = m.posterior(x[:3]).mean\n"
        "assert mean.shape == (3, 1) and bool(torch.isfinite(mean).all()), mean\n"
        "mods = {m.split('.')[0] for m in sys.modules}\n"
        "print(sorted(mods & {'sklearn', 'torch', 'pandas', 'pyarrow'}))\n"
        "import pandas\n"
        "print(pandas.DataFrame({'a': [1]}).shape)\n"
    )
    assert got.splitlines() == ["['sklearn', 'torch']", "(1, 1)"], got


def test_without_refuses_inside_and_restores_after() -> None:
    got = run(
        "import sys\n"
        "from loopctl.import_guard import without\n"
        "assert 'colorsys' not in sys.modules and 'os' in sys.modules\n"
        "with without('colorsys', 'os'):\n"
        "    try:\n"
        "        import colorsys\n"
        "        print('imported')\n"
        "    except ImportError:\n"
        "        print('refused')\n"
        "    import os  # already imported: untouched\n"
        "    print(os.sep)\n"
        "import colorsys\n"
        "print(colorsys.rgb_to_hsv(1.0, 0.0, 0.0))\n"
    )
    assert got.splitlines() == ["refused", "/", "(0.0, 1.0, 1.0)"], got


@settings(max_examples=500, deadline=None)
@given(
    seq=st.one_of(st.integers(), st.booleans(), st.floats(), st.text()),
    t=st.one_of(st.floats(allow_nan=False), st.integers(), st.text(), st.none()),
    kind=st.one_of(st.text(), st.integers(), st.none()),
    trial_id=st.one_of(st.none(), st.text(), st.integers()),
)
def test_event_header_is_the_canonical_text(seq: Any, t: Any, kind: Any, trial_id: Any) -> None:
    """Written out directly for speed, the header an event's hash covers must be the very
    text canonical() makes of it, for what the log holds and for what a tampered row may
    hold (other types: those go through canonical() itself, which refuses infinities)."""
    header = {"seq": seq, "time": t, "kind": kind, "trial_id": trial_id}
    try:
        want = canonical(header)
    except ValueError:
        with pytest.raises(ValueError):
            event_header(seq, t, kind, trial_id)
        return
    assert event_header(seq, t, kind, trial_id) == want
