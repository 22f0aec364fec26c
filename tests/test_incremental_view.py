"""The controller's bookkeeping is folded from new events only: after thousands of trials
(results, failures, retries, late results, amendments, rejections, imports, rolled-back
batches and a resume), the view it kept batch by batch must say exactly what a fresh
fold of the log and the tables' own queries say."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from loopctl import Campaign, costs, ledger, lifecycle
from loopctl.store import Store
from loopctl.strategies.base import CampaignData, Candidate, Proposal
from tests.specs import branin

TRIALS = 10_000


def fresh_fold(view: ledger.DataView) -> CampaignData:
    """Every event folded from the first, by a view that never saw the campaign before."""
    again = ledger.DataView(view.store, view.spec, view.space)
    head = view.store.conn.execute("SELECT MAX(seq) FROM events").fetchone()[0]
    return again.refresh(until=head)


def assert_agrees(view: ledger.DataView) -> None:
    store, spec = view.store, view.spec
    kept = view.refresh()
    assert kept == fresh_fold(view)  # the fold of the whole log
    assert kept == ledger.DataView(store, spec, view.space).refresh()  # from the tables
    assert view.run_counts() == ledger.run_counts(store)
    assert view.best() == ledger.best(store, spec)
    if spec.fidelities is not None:  # what the controller reads for every dispatch
        assert view.trial_costs() == costs.from_store(store.conn, spec.fidelities)
    for table in ("trials", "proposals"):
        highest = store.conn.execute(f"SELECT MAX(number) FROM {table}").fetchone()[0]
        with store.batch():
            assert store.next_number(table) == highest + 1


class Lab:
    """Drives a campaign the way the controller does, one group commit per round: results
    of what was running, then new candidates, then dispatch; with every kind of mishap."""

    def __init__(self, store: Store, view: ledger.DataView, seed: int) -> None:
        self.store, self.view, self.spec = store, view, view.spec
        self.rng = random.Random(seed)
        self.running: list[str] = []
        fid = view.spec.fidelities
        self.levels: list[str | None] = list(fid.names) if fid is not None else [None]

    def round(self) -> None:
        rng, spec = self.rng, self.spec
        with self.store.batch() as b:
            for tid in self.running:
                roll = rng.random()
                if roll < 0.04:
                    ledger.record_failure(b, tid, "sample cracked", False, "d", 2)
                elif roll < 0.10:
                    ledger.record_failure(b, tid, "hiccup", True, "d", 2)  # back to the queue
                elif roll < 0.12:
                    ledger.record_interrupt(b, tid, "driver lost", 2)
                else:
                    y = rng.uniform(0, 100)
                    ledger.record_result(b, spec, tid, {"y": y, "g": rng.uniform(-1, 1)}, "d")
            self.running = []
            counts = self.view.run_counts()  # read inside the batch, as the controller does
            queued = counts.get(lifecycle.PROPOSED, 0) + counts.get(lifecycle.APPROVED, 0)
            if queued < 8:
                data = self.view.refresh()
                cands = [
                    Candidate(
                        {"x1": rng.uniform(-5, 10), "x2": rng.uniform(0, 15)},
                        fidelity=rng.choice(self.levels),
                    )
                    for _ in range(8)
                ]
                proposal = Proposal("test", "1", data.seed, cands, sobol_drawn=len(cands))
                ledger.record_proposal(b, proposal, data.as_of)
            for t in ledger.dispatchable(self.store, spec)[:8]:
                if rng.random() < 0.01:
                    ledger.record_approval(b, t["id"], False, "ana", "too close")
                    continue
                ledger.record_dispatch(b, t["id"], "d", None)
                self.running.append(t["id"])

    def rollbacks(self) -> None:
        """A message handler failing halfway (its savepoint rolled back) and a whole batch
        rolled back, each after the view has read what they wrote."""
        spec, store, space = self.spec, self.store, self.view.space
        with store.batch() as b:
            with pytest.raises(RuntimeError), b.savepoint():
                ledger.record_suggestion(b, spec, space, {"x1": 2.0, "x2": 2.0}, "x")
                self.view.run_counts()
                raise RuntimeError("handler failed halfway")
            ledger.record_suggestion(b, spec, space, {"x1": 3.0, "x2": 2.0}, "x")
        with pytest.raises(RuntimeError), store.batch() as b:
            data = self.view.refresh()
            candidate = Candidate({"x1": 0.0, "x2": 0.0})
            ledger.record_proposal(b, Proposal("test", "1", 0, [candidate]), data.as_of)
            self.view.run_counts()
            raise RuntimeError("commit failed")

    def oddities(self) -> None:
        """A late result for a failed trial, an amendment of the best (so the best gets
        worse), an operator's suggestion and an import."""
        spec, store = self.spec, self.store
        failed = store.trials(lifecycle.FAILED)
        best = self.view.best()
        with store.batch() as b:
            if failed:
                ledger.record_result(b, spec, failed[0]["id"], {"y": 50.0, "g": 0.0}, "d")
            if best is not None:
                ledger.record_amendment(b, spec, best["trial_id"], {"y": 99.0}, "typo", "ana")
            ledger.record_suggestion(b, spec, self.view.space, {"x1": 1.0, "x2": 2.0}, "ana")
            ledger.record_imports(
                b,
                spec,
                self.view.space,
                [{"x1": self.rng.uniform(-5, 10), "x2": 3.0, "y": 60.0, "g": 0.5}],
                "past.csv",
            )
        for _ in range(3):
            self.round()


@pytest.mark.parametrize("fidelities", [False, True], ids=["one-level", "fidelities"])
def test_the_kept_view_is_a_fresh_fold_after_many_trials(tmp_path: Path, fidelities: bool) -> None:
    """With fidelities (fewer trials: the cost budget's room is O(trials) a refresh) the
    view also keeps each pending trial's level and judges the best at the target level."""
    trials = TRIALS // 5 if fidelities else TRIALS
    levels = [{"name": "cheap", "cost": 1}, {"name": "dear", "cost": 10}]
    extra: dict[str, Any] = {"fidelities": {"levels": levels, "target": "dear"}}
    path = branin(
        tmp_path,
        outcome_constraints=["g >= -0.5"],
        oracle=None,
        budget={"trials": trials, "cost": 1e9} if fidelities else {"trials": trials},
        **(extra if fidelities else {}),
    )
    db = tmp_path / "c.db"
    with Campaign.create(path, db, synchronous="NORMAL") as c:
        lab = Lab(c.store, ledger.DataView(c.store, c.spec, c.space), seed=1)
        checked: list[int] = []
        while (done := lab.view.run_counts().get(lifecycle.COMPLETED, 0)) < trials // 2:
            lab.round()
            if done // (trials // 10) > len(checked):
                checked.append(done)
                lab.rollbacks()
                lab.oddities()
                assert_agrees(lab.view)
        running = list(lab.running)
    # a resume: a new process starts from the tables, with trials still out
    with Campaign.open(db) as c:
        lab = Lab(c.store, ledger.DataView(c.store, c.spec, c.space), seed=2)
        lab.running = running
        assert_agrees(lab.view)
        while lab.view.run_counts().get(lifecycle.COMPLETED, 0) < trials:
            lab.round()
        lab.oddities()
        assert_agrees(lab.view)
        counts = lab.view.run_counts()
        data: Any = lab.view.refresh()
    assert counts[lifecycle.COMPLETED] >= trials and counts[lifecycle.FAILED] > trials // 100
    assert counts.get(lifecycle.REJECTED, 0) > trials // 1000 and data.pending and data.rejected
    assert len(checked) >= 4
    if fidelities:
        assert set(data.pending_fidelity) == {"cheap", "dear"}
        assert len(data.pending_fidelity) == len(data.pending)
        assert data.cost_left is not None


def test_a_view_can_leave_ready_candidates_out_of_the_pending_points(tmp_path: Path) -> None:
    """What a replacing proposal sees (ProposalMade.replaces): the same data, with the
    candidates it replaces gone from the pending points, and the others in their order."""
    camp = Campaign.create(branin(tmp_path), tmp_path / "x.db")
    store, view = camp.store, camp.view
    points = [{"x1": float(i), "x2": float(i)} for i in range(4)]
    with store.batch() as b:
        ids = ledger.record_proposal(
            b, Proposal("test", "1", 0, [Candidate(p) for p in points]), data_seq=0
        )
    full = view.refresh()
    assert full.pending == tuple(points)
    less = view.refresh(excluding=[ids[2], ids[0], "T9999"])
    assert less.pending == (points[1], points[3])
    assert less.completed == full.completed and less.as_of == full.as_of
    assert view.refresh() == full  # nothing left out unless asked
    camp.close()
