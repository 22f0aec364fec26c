"""Transfer from past data (`prior`): measured protection on a small problem, run through
the real campaign code (``Campaign.ask/tell`` in memory), several seeds.

The problem: a pool of 41 points on [0, 1] with a broad hill at 0.25 and the narrow,
higher optimum at 0.85, which a cold campaign of five trials mostly misses. A related
prior (the same landscape shifted and scaled: 3 f - 1) must find the optimum clearly more
often; an irrelevant one (an unrelated function peaking elsewhere) must not do worse than
cold by more than one seed in three."""

from __future__ import annotations

import math
import random
from typing import Any

import numpy as np
import pytest

from loopctl.campaign import Campaign
from loopctl.spec import parse_spec

POOL = [i / 40 for i in range(41)]
SEEDS = range(3)
TRIALS = 5  # 2 initial, then 3 model proposals


def f(x: float) -> float:
    return math.exp(-((x - 0.25) ** 2) / 0.05) + 1.6 * math.exp(-((x - 0.85) ** 2) / 0.003)


def unrelated(x: float) -> float:
    return math.cos(9 * x) + x


BEST = max(f(x) for x in POOL)


def prior_rows(kind: str, seed: int) -> list[dict[str, float]]:
    """An earlier campaign's 20 points: every other pool point, one left out by seed."""
    xs = POOL[::2]
    del xs[random.Random(seed).randrange(len(xs) // 2)]  # never the optimum's neighbourhood
    g = (lambda x: 3 * f(x) - 1) if kind == "related" else unrelated
    return [{"x": x, "y": g(x)} for x in xs]


def campaign(seed: int, prior: list[dict[str, float]] | None) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "name": "transfer-test",
        "seed": seed,
        "space": [{"name": "x", "type": "range", "bounds": [0, 1]}],
        "objectives": [{"name": "y", "goal": "maximize"}],
        "budget": {"trials": TRIALS},
        "pool": {"rows": [{"x": x} for x in POOL]},
        "strategy": {"initial_trials": 2, "options": {"acquisition": "ei"}},
    }
    if prior is not None:
        raw["prior"] = [{"rows": prior}]
    return raw


def found(seed: int, prior: list[dict[str, float]] | None) -> tuple[bool, list[Any]]:
    """Whether the campaign measured the optimum within TRIALS, and its proposals."""
    c = Campaign.create(parse_spec(campaign(seed, prior)), None)
    try:
        hit = False
        for _ in range(TRIALS):
            trial = c.ask(1)[0]
            y = f(trial.parameters["x"])
            c.tell(trial.id, {"y": y})
            hit = hit or y >= BEST - 1e-12
        return hit, c.store.proposals()
    finally:
        c.close()


@pytest.mark.slow
def test_a_related_prior_helps_and_an_irrelevant_one_does_no_harm() -> None:
    cold = [found(s, None)[0] for s in SEEDS]
    related = [found(s, prior_rows("related", s)) for s in SEEDS]
    irrelevant = [found(s, prior_rows("unrelated", s)) for s in SEEDS]
    n_cold, n_related = sum(cold), sum(h for h, _ in related)
    n_irrelevant = sum(h for h, _ in irrelevant)
    assert n_related == len(SEEDS) and n_related >= n_cold + 2, (cold, related)
    assert n_irrelevant >= n_cold - 1, (cold, irrelevant)
    # what the proposals record: the prior was used, and how much it agrees with this one
    corr = {
        kind: [
            p["diagnostics"]["prior"]["sources"][0]["correlation"]
            for _, proposals in runs
            for p in proposals
            if p["strategy"] == "transfer"
        ]
        for kind, runs in (("related", related), ("irrelevant", irrelevant))
    }
    assert corr["related"] and corr["irrelevant"]
    assert sum(corr["related"]) / len(corr["related"]) > sum(corr["irrelevant"]) / len(
        corr["irrelevant"]
    )


def test_the_example_campaign_learns_from_its_prior_file() -> None:
    """campaigns/branin-prior.yaml and its CSV (docs/campaign-file.md, "Starting from past
    data"): the first model proposal uses the prior, and finds the shifted, scaled copy of
    Branin well correlated with this campaign."""
    from loopctl.drivers.oracle_models import branin
    from loopctl.spec import load_spec
    from tests.conftest import ROOT

    path = ROOT / "campaigns" / "branin-prior.yaml"
    spec = load_spec(path)
    assert len(spec.prior[0].rows) == 24 and not spec.prior[0].dropped
    c = Campaign.create(spec, None)
    try:
        while not c.store.proposals() or c.store.proposals()[-1]["strategy"] != "transfer":
            t = c.ask(1)[0]
            c.tell(t.id, {"y": branin(np.array([t.parameters["x1"], t.parameters["x2"]]))})
        (source,) = c.store.proposals()[-1]["diagnostics"]["prior"]["sources"]
    finally:
        c.close()
    assert source["file"] == "branin-past.csv" and source["correlation"] > 0.5, source
