"""The cost rules and the routing rule as plain functions (loopctl.costs, policy.assign)."""

from __future__ import annotations

from loopctl import costs, lifecycle, policy
from loopctl.spec_types import Fidelities, FidelityLevel

FID = Fidelities((FidelityLevel("lo", 1.0), FidelityLevel("hi", 5.0)), "hi")


def test_each_dispatch_costs_its_level_and_a_measured_cost_replaces_the_last() -> None:
    trials = {
        "T1": costs.TrialCost("lo", 1, lifecycle.COMPLETED),
        "T2": costs.TrialCost("hi", 2, lifecycle.COMPLETED, measured=3.0),  # retried once
        "T3": costs.TrialCost(None, 1, lifecycle.RUNNING),  # a suggestion: the target level
        "T4": costs.TrialCost("lo", 0, lifecycle.PROPOSED),  # waiting: not spent yet
        "T5": costs.TrialCost(None, 0, lifecycle.COMPLETED),  # imported: never dispatched
    }
    assert costs.committed(FID, trials) == 1 + (5 + 3) + 5
    assert costs.room(FID, 20.0, trials) == 20 - 14 - 1  # the waiting one is reserved
    assert costs.fits(FID, 15.0, 14.0, "lo") and not costs.fits(FID, 15.0, 14.0, "hi")
    assert costs.fits(FID, 0.3, 0.1 + 0.2 - 1.0, "lo")  # decimal sums do not refuse the last
    assert costs.fits(FID, None, 1e9, "hi")  # no cost budget


def test_a_trial_goes_only_to_a_driver_serving_its_level_within_the_budget() -> None:
    slots = [
        policy.Slot(b"cheap", 2, 0.0, serves=frozenset({"lo"})),
        policy.Slot(b"costly", 1, 0.0, serves=frozenset({"hi"})),
    ]
    levels: dict[str, str | None] = {"T1": "hi", "T2": "hi", "T3": "lo", "T4": "lo"}
    got = policy.assign(["T1", "T2", "T3", "T4"], slots, 0, 10, levels)
    # T2 waits (the costly driver is full); later cheap trials still go
    assert [(a.trial, a.driver) for a in got] == [
        ("T1", b"costly"),
        ("T3", b"cheap"),
        ("T4", b"cheap"),
    ]
    left = [6.0]

    def affordable(tid: str) -> bool:
        c = FID.cost(levels[tid] or "hi")
        if c > left[0]:
            return False
        left[0] -= c
        return True

    got = policy.assign(["T1", "T2", "T3", "T4"], slots, 0, 10, levels, affordable)
    assert [a.trial for a in got] == ["T1", "T3"]  # 5 + 1: T4 would pass the budget
    everyone = [policy.Slot(b"any", 4, 0.0)]  # serves every level
    assert len(policy.assign(["T1", "T3"], everyone, 0, 10, levels)) == 2
