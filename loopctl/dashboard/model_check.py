"""The leave-one-out check of the campaign's model, for the page: computed on request in a
worker thread, kept until the campaign records a new event.

Fitting the GP takes a fraction of a second to a few seconds (and importing torch the
first time several more): the server must answer other requests meanwhile, and a page
open for days must not refit on every update. So a request starts at most one
computation at a time and gets ``computing`` (with the previous answer, if any) until it
is done; the answer is kept with the newest event number it was computed at, and a
request at the same number gets it at once.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from loopctl.dashboard.data import Campaign
from loopctl.model_check import MIN_TRIALS, leave_one_out


class ModelCheck:
    """The cached leave-one-out answer of one campaign and the worker that renews it."""

    def __init__(self, campaign: Campaign) -> None:
        self.campaign = campaign
        self._lock = threading.Lock()
        self._answer: dict[str, Any] | None = None  # with "head": the event it reflects
        self._working: threading.Thread | None = None
        self._started = 0.0

    def get(self, compute: bool) -> dict[str, Any]:
        """The answer for the campaign as it is now, or ``computing`` while the worker
        makes it (``compute``: start it if needed; else only say what is kept)."""
        head = self.campaign.head()
        with self._lock:
            kept = self._answer
            if kept is not None and kept["head"] == head:
                return {"state": "ready", **kept}
            if self._working is None and compute:
                self._started = time.monotonic()
                self._working = threading.Thread(
                    target=self._work, args=(head,), name="leave-one-out", daemon=True
                )
                self._working.start()
            if self._working is not None:
                since = time.monotonic() - self._started
                return {"state": "computing", "head": head, "for_s": since, "previous": kept}
            return {"state": "stale" if kept else "none", "head": head, "previous": kept}

    def _work(self, head: int) -> None:
        try:
            answer = self._compute(head)
        except Exception as exc:  # a failed fit is shown, and kept until the next event
            answer = {"head": head, "error": f"{type(exc).__name__}: {exc}"}
        with self._lock:
            self._answer = answer
            self._working = None

    def _compute(self, head: int) -> dict[str, Any]:
        spec = self.campaign.spec
        with self.campaign.store() as store:
            loo = leave_one_out(store, spec)
        if loo is None:
            why = (
                "the model check is drawn for one objective"
                if len(spec.objectives) != 1
                else f"needs {MIN_TRIALS} completed trials"
            )
            return {"head": head, "unavailable": why}
        return {
            "head": head,
            "objective": loo.objective,
            "observed": _floats(loo.observed),
            "predicted": _floats(loo.predicted),
            "sd": _floats(loo.sd),
            "trials": loo.trials,
            "completed": loo.completed,
            "within_2sd": loo.within_2sd,
            "notes": loo.notes,
            "seconds": loo.seconds,
        }


def _floats(values: Any) -> list[float]:
    return [float(v) for v in values]
