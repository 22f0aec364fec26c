"""The controller's decisions as plain functions: no socket, no clock, no database (but for
one check that the ledger records the same retry verdicts the policy predicts)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from loopctl import ledger, lifecycle, policy
from loopctl.policy import Assignment, Best, Budget, Held, Slot, Tally, TimeoutRule
from loopctl.space import Space
from loopctl.spec import load_spec
from loopctl.store import Store
from loopctl.strategies import make_strategy
from tests.specs import branin

BUDGET = Budget(target=10, max_in_flight=3, max_failed=4)

# ------------------------------------------------------------------ retries


@pytest.mark.parametrize(
    ("attempts", "retryable", "status"),
    [
        (1, True, lifecycle.PROPOSED),
        (2, True, lifecycle.PROPOSED),
        (3, True, lifecycle.FAILED),  # retries 2: three dispatches, then failed for good
        (1, False, lifecycle.FAILED),  # not retryable: failed at once
    ],
)
def test_a_failure_is_retried_only_while_retryable_and_within_the_retries(
    attempts: int, retryable: bool, status: str
) -> None:
    assert policy.after_failure(attempts, retries=2, retryable=retryable) == status


def test_an_interrupted_trial_is_abandoned_not_failed_once_the_retries_are_used() -> None:
    assert policy.after_interrupt(1, retries=1) == lifecycle.PROPOSED
    assert policy.after_interrupt(2, retries=1) == lifecycle.ABANDONED
    assert policy.after_interrupt(1, retries=0) == lifecycle.ABANDONED


def test_the_ledger_records_the_verdicts_the_policy_predicts(tmp_path: Path) -> None:
    """The ledger applies the retry rule when it records; it must agree with the policy."""
    spec = load_spec(branin(tmp_path, strategy={"method": "sobol"}))
    store = Store.create(tmp_path / "a.db", spec.raw, spec.hash, {})
    data = ledger.DataView(store, spec, Space.for_spec(spec)).refresh()
    with store.batch() as b:
        ids = ledger.record_proposal(b, make_strategy(spec).propose(data, 4), data.as_of)
    verdicts: dict[str, tuple[str, str]] = {}
    with store.batch() as b:
        for tid in ids:
            ledger.record_dispatch(b, tid, "d", None)
        got = ledger.record_failure(b, ids[0], "x", True, "d", retries=0)
        verdicts[ids[0]] = (got, policy.after_failure(1, 0, True))
        got = ledger.record_failure(b, ids[1], "x", True, "d", retries=1)
        verdicts[ids[1]] = (got, policy.after_failure(1, 1, True))
        got = ledger.record_interrupt(b, ids[2], "x", retries=0)
        verdicts[ids[2]] = (got, policy.after_interrupt(1, 0))
        got = ledger.record_interrupt(b, ids[3], "x", retries=1)
        verdicts[ids[3]] = (got, policy.after_interrupt(1, 1))
    store.close()
    assert all(got == want for got, want in verdicts.values()), verdicts
    assert {got for got, _ in verdicts.values()} == {
        lifecycle.FAILED,
        lifecycle.PROPOSED,
        lifecycle.ABANDONED,
    }


# ------------------------------------------------------------------ budget


def test_open_trials_count_against_the_budget_and_max_in_flight() -> None:
    assert policy.proposals_wanted(BUDGET, Tally(completed=0, open=0)) == 3
    assert policy.proposals_wanted(BUDGET, Tally(completed=0, open=2)) == 1
    # 8 completed, 1 open: one trial of the budget left, though two could run
    assert policy.proposals_wanted(BUDGET, Tally(completed=8, open=1)) == 1
    assert policy.proposals_wanted(BUDGET, Tally(completed=9, open=1)) == 0


def test_failed_trials_do_not_use_the_budget() -> None:
    assert policy.proposals_wanted(BUDGET, Tally(completed=5, failed=3, open=0)) == 3


def test_tally_counts_every_open_status_and_nothing_else() -> None:
    counts = {
        lifecycle.PROPOSED: 1,
        lifecycle.APPROVED: 2,
        lifecycle.RUNNING: 3,
        lifecycle.IN_DOUBT: 4,
        lifecycle.COMPLETED: 5,
        lifecycle.FAILED: 6,
        lifecycle.ABANDONED: 7,
        lifecycle.REJECTED: 8,
    }
    assert Tally.of(counts) == Tally(completed=5, failed=6, open=10)


def test_no_proposal_while_stopping_proposing_or_backing_off() -> None:
    assert policy.may_propose(False, False, now=5.0, propose_after=5.0)
    assert not policy.may_propose(True, False, now=5.0, propose_after=0.0)
    assert not policy.may_propose(False, True, now=5.0, propose_after=0.0)
    assert not policy.may_propose(False, False, now=4.9, propose_after=5.0)


def test_the_campaign_is_done_when_enough_trials_completed_even_with_trials_open() -> None:
    assert policy.finished(BUDGET, Tally(completed=9, open=1), 0.0, None) is None
    assert (
        policy.finished(BUDGET, Tally(completed=10, open=2), 0.0, None)
        == "budget: 10 trials completed"
    )


def test_the_campaign_stops_on_failures_then_wall_time_then_the_stop_condition() -> None:
    b = Budget(target=10, max_in_flight=3, max_failed=4, wall_time=60.0, stop_at=1.5, sign=-1.0)
    reached = Best("y", 1.5)
    assert (
        policy.finished(b, Tally(failed=4), 61.0, reached) == "too many failures: 4 trials failed"
    )
    assert policy.finished(b, Tally(failed=3), 61.0, reached) == "wall time of 60 s used"
    assert policy.finished(b, Tally(), 60.0, reached) == "stop condition: y reached 1.5"
    assert policy.finished(b, Tally(), 60.0, Best("y", 1.6)) is None  # minimising: not yet
    assert policy.finished(b, Tally(), 60.0, None) is None
    up = Budget(target=10, max_in_flight=3, max_failed=4, stop_at=1.5, sign=1.0)
    assert policy.finished(up, Tally(), 1e9, Best("y", 1.4)) is None  # no wall time: none
    assert policy.finished(up, Tally(), 0.0, Best("y", 1.6)) == "stop condition: y reached 1.6"


def test_space_exhausted_only_when_nothing_is_open() -> None:
    assert policy.exhausted(Tally(completed=3))
    assert not policy.exhausted(Tally(completed=3, open=1))


# ------------------------------------------------------------------ dispatch


def test_a_driver_at_capacity_or_not_ready_gets_nothing() -> None:
    slots = [Slot(b"full", 0, 0.0), Slot(b"new", 2, 0.0, ready=False), Slot(b"ok", 1, 9.0)]
    got = policy.assign(["t1", "t2"], slots, in_flight=0, max_in_flight=10)
    assert got == [Assignment("t1", b"ok")]


def test_oldest_trials_go_first_up_to_max_in_flight() -> None:
    slots = [Slot(b"a", 5, 0.0)]
    got = policy.assign(["t1", "t2", "t3"], slots, in_flight=1, max_in_flight=3)
    assert [a.trial for a in got] == ["t1", "t2"]
    assert policy.assign(["t1"], slots, in_flight=3, max_in_flight=3) == []


def test_work_spreads_to_the_most_free_then_the_longest_idle_driver() -> None:
    slots = [Slot(b"a", 2, 5.0), Slot(b"b", 2, 1.0), Slot(b"c", 1, 0.0)]
    got = policy.assign(["t1", "t2", "t3", "t4", "t5"], slots, 0, 10)
    # b (idle longest of the two with 2 free), a, then all have 1 free: c has never been
    # given one this round, then b before a (b was given its trial first)
    assert [a.driver for a in got] == [b"b", b"a", b"c", b"b", b"a"]


def test_a_driver_just_given_a_trial_loses_ties_to_one_given_earlier() -> None:
    """The order drivers were given trials this round breaks ties, not their listing:
    a was given its trial after b, so b goes first when both have one slot left."""
    slots = [Slot(b"a", 3, 100.0), Slot(b"b", 2, 0.0)]
    got = policy.assign(["t1", "t2", "t3", "t4"], slots, 0, 10)
    assert [a.driver for a in got] == [b"a", b"b", b"a", b"b"]


def test_timeout_rule_fixed_off_or_learnt() -> None:
    auto = TimeoutRule(auto=True, fixed=None, first=86400.0, floor=300.0, factor=10.0)
    assert auto.seconds(None) == 86400.0
    assert auto.seconds(2.0) == 300.0
    assert auto.seconds(60.0) == 600.0
    assert TimeoutRule(False, 60.0, 86400.0, 300.0, 10.0).seconds(1000.0) == 60.0
    assert TimeoutRule(False, None, 86400.0, 300.0, 10.0).seconds(None) is None
    assert policy.deadline(100.0, 5.0) == 105.0 and policy.deadline(100.0, None) is None


# ------------------------------------------------------------------ expiry


def test_silent_drivers_are_those_past_the_heartbeat_timeout() -> None:
    seen = {b"a": 0.0, b"b": 5.0, b"c": 10.0}
    assert policy.silent(seen, now=15.0, heartbeat_timeout=10.0) == [b"a"]  # b: exactly 10


def held(tid: str, **kw: object) -> Held:
    base: dict[str, object] = {
        "status": lifecycle.RUNNING,
        "driver": "d",
        "attempts": 1,
        "deadline": 100.0,
        "started_at": 0.0,
    }
    return Held(tid, **{**base, **kw})  # type: ignore[arg-type]


def expire(trials: list[Held], wall: float, **kw: object) -> policy.Expired:
    args: dict[str, object] = {
        "live": {"d"},
        "orphans": {},
        "now": 50.0,
        "wall": wall,
        "heartbeat_timeout": 10.0,
        "auto_timeout": None,
        "retries": 1,
    }
    return policy.expire(trials, **{**args, **kw})  # type: ignore[arg-type]


def test_a_trial_expires_only_past_its_deadline() -> None:
    assert expire([held("t")], wall=100.0).expiries == []  # at the deadline: not yet
    (e,) = expire([held("t")], wall=100.001).expiries
    assert (e.trial, e.reason, e.status, e.timed_out) == (
        "t",
        "trial timed out",
        lifecycle.PROPOSED,
        True,
    )
    (e,) = expire([held("t", attempts=2)], wall=101.0).expiries
    assert e.status == lifecycle.ABANDONED  # retries 1: dispatched twice already
    assert expire([held("t", deadline=None)], wall=1e12).expiries == []


def test_an_unclaimed_in_doubt_trial_expires_at_the_end_of_its_grace() -> None:
    t = held("t", status=lifecycle.IN_DOUBT, deadline=20.0)
    (e,) = expire([t], wall=21.0, auto_timeout=5.0).expiries
    assert e.reason == "in doubt and no driver claimed it in time"
    # the learnt timeout applies to running trials only: in doubt, the grace holds
    assert expire([t], wall=19.0, auto_timeout=5.0).expiries == []


def test_the_learnt_timeout_shortens_the_deadline_of_trials_already_out() -> None:
    t = held("t", deadline=86400.0, started_at=1000.0)
    assert expire([t], wall=1300.0, auto_timeout=300.0).expiries == []
    assert [e.trial for e in expire([t], wall=1301.0, auto_timeout=300.0).expiries] == ["t"]
    assert expire([t], wall=1301.0, auto_timeout=None).expiries == []
    never_started = held("t", deadline=None, started_at=None)
    assert expire([never_started], wall=1e12, auto_timeout=300.0).expiries == []


def test_an_orphan_is_interrupted_after_a_heartbeat_timeout_without_its_driver() -> None:
    t = held("t", driver="gone", deadline=None)
    first = expire([t], wall=0.0, now=50.0)
    assert first.expiries == [] and first.orphans == {"t": 50.0}
    later = expire([t], wall=0.0, now=60.0, orphans=first.orphans)
    assert later.expiries == [] and later.orphans == {"t": 50.0}  # exactly the timeout
    (e,) = expire([t], wall=0.0, now=60.5, orphans=first.orphans).expiries
    assert (e.reason, e.timed_out) == ("its driver gone is not connected", False)
    # its driver is back: no longer an orphan, and forgotten as one
    back = expire([held("t", deadline=None)], wall=0.0, now=61.0, orphans=first.orphans)
    assert back.expiries == [] and back.orphans == {}


def test_an_orphan_past_its_deadline_times_out_before_its_grace_ends() -> None:
    t = held("t", driver="gone", deadline=10.0)
    got = expire([t], wall=11.0, now=50.0)
    assert [(e.trial, e.timed_out) for e in got.expiries] == [("t", True)]
    assert got.orphans == {"t": 50.0}


def test_an_in_doubt_trial_is_never_an_orphan() -> None:
    t = held("t", status=lifecycle.IN_DOUBT, driver="gone", deadline=None)
    got = expire([t], wall=0.0, now=1e6, orphans={"t": 0.0})
    assert got.expiries == [] and got.orphans == {}


def test_expiries_keep_the_order_of_the_trials() -> None:
    trials = [held("t2", deadline=1.0), held("t1", deadline=1.0), held("t3", deadline=1e9)]
    assert [e.trial for e in expire(trials, wall=2.0).expiries] == ["t2", "t1"]


def test_policy_imports_no_socket_database_or_event_loop() -> None:
    code = (
        "import sys, loopctl.policy; "
        "bad = {'zmq', 'asyncio', 'sqlite3', 'sqlite_utils', 'loopctl.store', 'loopctl.ledger'}; "
        "print(sorted(bad & set(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert out.strip() == "[]"


def test_many_drivers_each_get_one_before_any_gets_a_second() -> None:
    slots = [Slot(b"%04d" % i, 2, float(1000 - i)) for i in range(1000)]
    got = policy.assign([f"t{i}" for i in range(200)], slots, 0, 200)
    # the 200 idle longest (the last listed), the longest idle first
    assert [a.driver for a in got] == [b"%04d" % i for i in range(999, 799, -1)]


def test_ahead_keeps_candidates_ready_beyond_max_in_flight_within_the_budget() -> None:
    ahead = Budget(target=10, max_in_flight=3, max_failed=4, ahead=2)
    # free slots first, alone: the batch is sized to the free capacity
    assert policy.proposals_wanted(ahead, Tally(completed=0, open=0)) == 3
    assert policy.proposals_wanted(ahead, Tally(completed=0, open=1)) == 2
    # every slot taken: the ready candidates missing
    assert policy.proposals_wanted(ahead, Tally(completed=0, open=3)) == 2
    assert policy.proposals_wanted(ahead, Tally(completed=0, open=4)) == 1
    assert policy.proposals_wanted(ahead, Tally(completed=0, open=5)) == 0  # two ready
    # the ready candidates count against the budget: none is proposed that could not run
    assert policy.proposals_wanted(ahead, Tally(completed=6, open=3)) == 1
    assert policy.proposals_wanted(ahead, Tally(completed=7, open=3)) == 0


def test_stale_ready_candidates_are_those_with_enough_new_results_oldest_first() -> None:
    ready = {"T3": 40, "T1": 20, "T2": 20}
    news = {"T3": 1, "T1": 4, "T2": 5}
    assert policy.stale(ready, news, 4) == ["T1", "T2"]
    assert policy.stale(ready, news, 1) == ["T1", "T2", "T3"]
    assert policy.stale(ready, news, 6) == []
    assert policy.stale(ready, news, 0) == []  # 0: never refreshed


def test_ready_candidates_only_where_they_would_be_fresh_when_used() -> None:
    # 4 slots, trials of 10 s: a 2 s proposal sees about 0.8 results arrive, fresh
    assert policy.ahead_pays(2.0, 10.0, 4, 4)
    # trials of 1 s: a 2 s proposal sees about 8 results arrive, stale before use
    assert not policy.ahead_pays(2.0, 1.0, 4, 4)
    assert policy.ahead_pays(2.0, 1.0, 4, 0)  # never stale: always
    assert policy.ahead_pays(None, 1.0, 4, 4) and policy.ahead_pays(2.0, None, 4, 4)
