"""The Python API for notebooks: ask/tell over the same store and strategies as the controller."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loopctl import costs, ledger, lifecycle
from loopctl.errors import LoopctlError, TrialError
from loopctl.integrity import stored_spec
from loopctl.space import Space
from loopctl.spec import Spec, load_spec, parse_spec
from loopctl.store import Store
from loopctl.strategies import make_strategy
from loopctl.tables import trial_rows
from loopctl.versions import software_versions

if TYPE_CHECKING:
    import pandas

API_DRIVER = "python-api"


@dataclass(frozen=True)
class Trial:
    id: str
    parameters: dict[str, Any]
    fidelity: str | None = None  # campaigns with `fidelities`: the level to measure it at


class Campaign:
    """An open campaign database. Holds the writer lock until :meth:`close`."""

    def __init__(self, store: Store, spec: Spec) -> None:
        self.store = store
        self.spec = spec
        self.space = Space.for_spec(spec)
        self.view = ledger.DataView(store, spec, self.space)
        self.strategy = make_strategy(spec)

    @classmethod
    def create(
        cls,
        spec_or_path: Spec | Mapping[str, Any] | str | Path,
        db: str | Path | None = None,
        *,
        synchronous: str = "FULL",
    ) -> Campaign:
        """Start a campaign; ``db=None`` keeps it in memory (nothing written to disk)."""
        if isinstance(spec_or_path, Spec):
            spec = spec_or_path
        elif isinstance(spec_or_path, Mapping):
            spec = parse_spec(spec_or_path)
        else:
            spec = load_spec(spec_or_path)
        store = Store.create(
            db if db is not None else ":memory:",
            spec.raw,
            spec.hash,
            software_versions(),
            synchronous=synchronous,
            source=spec.source_file,
        )
        return cls(store, spec)

    @classmethod
    def open(cls, db: str | Path) -> Campaign:
        store = Store.open(db)
        return cls(store, stored_spec(store))

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Campaign:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ ask / tell

    def ask(self, n: int = 1) -> list[Trial]:
        """Hand out up to ``n`` trials to run: re-queued ones first, then new proposals.

        Never past the budget (``budget.trials``, or the last ``--trials`` given): fewer
        than asked come with a warning, none left raises. A finite space that has run out
        of new candidates gives fewer (or none) with a warning too."""
        if n < 1:
            raise ValueError("n must be at least 1")
        budget = self.store.run_settings().get("trials") or self.spec.budget.trials
        counts = self.view.run_counts()
        out = (lifecycle.COMPLETED, lifecycle.RUNNING, lifecycle.IN_DOUBT)  # handed out
        used = sum(counts.get(s, 0) for s in out)
        left = budget - used
        if left <= 0:
            raise LoopctlError(
                f"ask({n}): the budget of {budget} trials is used ({used} completed or "
                "running); raise it with set_budget(trials) (or resume --trials)"
            )
        if n > left:
            warnings.warn(
                f"ask({n}): only {left} trials are left of the budget of {budget}; "
                f"returning {left}",
                stacklevel=2,
            )
            n = left
        queued = self.store.trials(lifecycle.PROPOSED)[:n]
        proposal = None
        if len(queued) < n:
            data = self.view.refresh()
            proposal = self.strategy.propose(data, n - len(queued))
            got = len(queued) + len(proposal.candidates)
            if got < n:
                warnings.warn(
                    f"ask({n}): the space has no more new candidates; returning {got}",
                    stacklevel=2,
                )
        with self.store.batch() as b:
            ids = [t["id"] for t in queued]
            if proposal is not None:
                ids += ledger.record_proposal(b, proposal, data.as_of, origin="api")
            for tid in ids:
                ledger.record_dispatch(b, tid, API_DRIVER, None)
        levels = {}
        if self.spec.fidelities is not None:
            levels = {
                tid: c.fidelity or self.spec.fidelities.target
                for tid, c in costs.from_store(self.store.conn, self.spec.fidelities).items()
            }
        return [Trial(tid, self._trial(tid)["parameters"], levels.get(tid)) for tid in ids]

    def tell(
        self,
        trial_id: str,
        outcomes: Mapping[str, Any],
        metadata: Mapping[str, Any] | None = None,
        cost: float | None = None,
    ) -> None:
        """Record a result: ``{"objective": value}`` or ``{"objective": (mean, sem)}``;
        ``cost``: what it cost, measured (campaigns with fidelities; else its level's).

        Telling the same values again does nothing; other values for a trial that has its
        result raise :class:`TrialError` (see :meth:`amend`)."""
        t = self.store.trial(trial_id)
        if t is not None and t["status"] == lifecycle.COMPLETED:
            ledger.check_retold(self.store, self.spec, trial_id, outcomes)
            return
        with self.store.batch() as b:
            ledger.record_result(b, self.spec, trial_id, outcomes, API_DRIVER, metadata, cost)

    def set_budget(self, trials: int) -> None:
        """Change the campaign's budget, as `loopctl resume --trials` does: recorded (a
        ``run_settings`` event) and kept by later runs."""
        if trials < 1:
            raise ValueError("trials must be at least 1")
        with self.store.batch() as b:
            b.add("run_settings", None, {"trials": int(trials)})

    def amend(
        self, trial_id: str, outcomes: Mapping[str, Any], reason: str, operator: str | None = None
    ) -> str:
        """Correct a recorded result (a mis-typed value, a re-calibrated instrument): the
        given outcomes replace the old ones for every reader, the strategy included, and
        the log keeps both, with the operator (default: your login), time and reason."""
        import getpass

        with self.store.batch() as b:
            return ledger.record_amendment(
                b, self.spec, trial_id, outcomes, reason, operator or getpass.getuser()
            )

    def fail(self, trial_id: str, reason: str, retryable: bool = False) -> None:
        """Say a trial could not be measured; a trial that has its result cannot fail."""
        t = self.store.trial(trial_id)
        if t is not None and t["status"] == lifecycle.COMPLETED:
            raise TrialError(
                "already_completed",
                f"trial {trial_id} already has a result; it cannot fail now (to correct the "
                "result, use amend)",
            )
        with self.store.batch() as b:
            ledger.record_failure(
                b, trial_id, reason, retryable, API_DRIVER, self.spec.execution.retries
            )

    # ------------------------------------------------------------------ reading

    def best(self) -> dict[str, Any] | None:
        """The best completed trial on the first objective (see :meth:`pareto` for several)."""
        return self.view.best()

    def pareto(self) -> list[dict[str, Any]]:
        """The non-dominated completed trials, each with every objective's value (best first
        on the first objective); with one objective, the best trial(s)."""
        return ledger.pareto(self.store, self.spec)

    def trials(self) -> list[dict[str, Any]]:
        return self.store.trials()

    def to_dataframe(self) -> pandas.DataFrame:
        import pandas

        return pandas.DataFrame(trial_rows(self.store, self.spec))

    def _trial(self, tid: str) -> dict[str, Any]:
        t = self.store.trial(tid)
        assert t is not None
        return t
