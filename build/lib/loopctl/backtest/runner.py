"""One seeded campaign of one strategy on a scenario, through ``Campaign.ask/tell``.

The run uses the very code a real campaign uses (store, strategies, their
recorded diagnostics) in an in-memory database, with the scenario's
measurements as the oracle. It stops when the budget is spent or every top
candidate has been found: after that no Liang metric and no regret can change.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from loopctl.backtest.metrics import n_top, top_set
from loopctl.backtest.scenario import BacktestError, Scenario
from loopctl.spec import Spec, parse_spec

RANDOM = "random"  # a seeded random order of the pool: Sobol's pool mode


@dataclass(frozen=True)
class Arm:
    """A strategy under test: a label for the tables, a method and its options."""

    label: str
    method: str = "auto"
    options: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> Arm:
        """``auto``, ``random``, ``LABEL=METHOD`` or ``LABEL=METHOD,key=value,...``."""
        import yaml

        label, _, rest = text.partition("=")
        if not rest:
            return cls(label.strip(), label.strip())
        method, *pairs = [s.strip() for s in rest.split(",")]
        options: dict[str, Any] = {}
        for pair in pairs:
            key, eq, value = pair.partition("=")
            if not eq or not key.strip():
                raise BacktestError(f"strategy {text!r}: {pair!r} is not key=value")
            options[key.strip()] = yaml.safe_load(value)
        return cls(label.strip(), method, options)

    def strategy(self, initial: int | None) -> dict[str, Any]:
        out: dict[str, Any] = {"method": "sobol" if self.method == RANDOM else self.method}
        if self.options:
            out["options"] = dict(self.options)
        if initial is not None and self.method != RANDOM:
            out["initial_trials"] = initial
        return out


def campaign_spec(
    scenario: Scenario, arm: Arm, seed: int, budget: int, initial: int | None
) -> dict[str, Any]:
    raw = copy.deepcopy(dict(scenario.raw))
    raw["seed"] = seed
    raw["strategy"] = arm.strategy(initial)
    raw["budget"] = {"trials": budget}
    for key in ("drivers", "oracle", "security", "robot", "outcome_constraints"):
        raw.pop(key, None)  # the backtest is the oracle; nothing is spawned or connected
    raw["objectives"] = [o for o in raw["objectives"] if o.get("name") == scenario.objective]
    return raw


def run(
    scenario: Scenario, arm: Arm, seed: int, budget: int, batch: int, initial: int | None
) -> dict[str, Any]:
    """One run's record: which pool rows it measured, in order, and what it cost."""
    from loopctl.campaign import Campaign

    spec = _spec(scenario, campaign_spec(scenario, arm, seed, budget, initial))
    top, m = top_set(scenario.values, scenario.sign), n_top(scenario.n_pool)
    order: list[int] = []
    seconds: list[float] = []
    found = 0
    campaign = Campaign.create(spec, None)
    try:
        while len(order) < budget and found < m:
            t0 = time.perf_counter()
            trials = campaign.ask(min(batch, budget - len(order)))
            seconds.append(time.perf_counter() - t0)
            if not trials:
                break
            for trial in trials:
                row = campaign.space.in_pool(trial.parameters)
                if row is None:
                    raise BacktestError(f"{arm.label} proposed a candidate outside the pool")
                campaign.tell(trial.id, {scenario.objective: float(scenario.values[row])})
                order.append(row)
                found += row in top
        proposals = campaign.store.proposals()
    finally:
        campaign.close()
    return {
        "arm": arm.label,
        "seed": seed,
        "order": order,
        "seconds": seconds,
        "picked": dict(Counter(_picked(p) for p in proposals)),
    }


_pools: dict[str, Any] = {}


def _spec(scenario: Scenario, raw: dict[str, Any]) -> Spec:
    """The run's campaign, its pool checked once per process: checking 3,000 composition
    rows took seconds, and every run of a scenario has the same pool."""
    key = scenario.fingerprint
    if key not in _pools:
        _pools.clear()
        _pools[key] = parse_spec(raw, scenario.source).pool
    pool = raw.get("pool") or {}
    rows = pool.get("rows") if isinstance(pool, Mapping) else None
    # the rest is parsed with two rows of the pool: a formula parameter needs a pool
    light = {**raw, "pool": {**pool, "rows": rows[:2]}} if rows else raw
    spec = parse_spec(light, scenario.source)
    return dataclasses.replace(spec, pool=_pools[key], raw=raw)


def _picked(proposal: Mapping[str, Any]) -> str:
    """What made a proposal: the strategy, and the surrogate auto chose when it chose one."""
    diagnostics = proposal.get("diagnostics") or {}
    surrogate = diagnostics.get("surrogate", {})
    chosen = surrogate.get("chosen") if isinstance(surrogate, Mapping) else None
    return f"{proposal['strategy']}:{chosen}" if chosen else str(proposal["strategy"])
