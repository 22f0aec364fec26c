"""The Sobol strategy keeps its engine between proposals; what it proposes must not depend
on that: two campaigns of one seed, interleaved, each get the sequence from its start."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.stats import qmc

from loopctl import Campaign
from loopctl.replay import replay
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


def test_points_drawn_in_blocks_are_the_sequence_and_replay(tmp_path: Path) -> None:
    """Each proposal draws its points in blocks of what it still needs; under a constraint
    that turns about half of them away, the proposals must still be the sequence with the
    infeasible points skipped, each starting where the last one stopped, and replay."""
    spec = branin(
        tmp_path,
        oracle=None,
        strategy={"method": "sobol"},
        budget={"trials": 60},
        constraints=["x1 + x2 <= 7"],
    )
    with Campaign.create(spec, tmp_path / "c.db") as c:
        got = []
        for n in (1, 5, 3, 8, 2, 7):
            for t in c.ask(n):
                got.append([t.parameters["x1"], t.parameters["x2"]])
                c.tell(t.id, {"y": 1.0})
        seed, space = c.spec.seed, c.space
        drawn = sum(p["sobol_drawn"] for p in c.store.proposals())
        results = replay(c.store, c.spec)
    one_by_one = qmc.Sobol(d=2, scramble=True, seed=seed)
    want = []
    for _ in range(drawn):
        values = space.from_unit(one_by_one.random(1)[0])
        if not space.violated(values):
            want.append([values["x1"], values["x2"]])
    assert drawn > len(got) + 5  # points were turned away, within and across blocks
    np.testing.assert_array_equal(got, want)
    assert len(results) == 6 and all(r["ok"] for r in results), results
