"""The Sobol strategy keeps its engine between proposals; what it proposes must not depend
on that: two campaigns of one seed, interleaved, each get the sequence from its start."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.stats import qmc

from loopctl import Campaign
from tests.specs import branin


def test_interleaved_campaigns_each_continue_their_own_sequence(tmp_path: Path) -> None:
    spec = branin(tmp_path, oracle=None, strategy={"method": "sobol"}, budget={"trials": 40})
    with Campaign.create(spec, None) as a, Campaign.create(spec, None) as b:
        got: dict[str, list[list[float]]] = {"a": [], "b": []}
        for n, c, name in [(3, a, "a"), (2, b, "b"), (1, a, "a"), (4, a, "a"), (5, b, "b")]:
            for t in c.ask(n):
                got[name].append([t.parameters["x1"], t.parameters["x2"]])
                c.tell(t.id, {"y": 1.0})
        seed = a.spec.seed
        space = a.space
    fresh = qmc.Sobol(d=2, scramble=True, seed=seed).random(8)
    want = [[p["x1"], p["x2"]] for p in (space.from_unit(u) for u in fresh)]
    np.testing.assert_allclose(got["a"], want[:8])
    np.testing.assert_allclose(got["b"], want[:7])
