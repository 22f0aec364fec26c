"""Fault injection for tests of the controller's own failure handling; inert by default.

The tests that prove no failure of the event loop is silent need a controller that
is a real separate process, fails at a chosen stage, and is otherwise untouched. They
set ``LOOPCTL_FAULTS`` in that process's environment, e.g.::

    LOOPCTL_FAULTS="propose:2+,dispatch:5"

``STAGE:N`` raises :class:`InjectedFault` on the N-th pass through that stage only;
``STAGE:N+`` on the N-th and every later pass; ``STAGE:N-M`` on passes N to M. Stages
are named where :func:`inject` is called (receive, decode, handle, commit, propose,
dispatch, disk_full). ``disk_full`` is the outside world's fault rather than ours: it
raises what SQLite raises when a commit finds the disk full (a real tmpfs filled to the
brim behaves the same, but a test cannot mount one everywhere). Without the variable,
:func:`inject` is one dictionary look-up.
"""

from __future__ import annotations

import os
import sqlite3
from collections import Counter

ENV = "LOOPCTL_FAULTS"


class InjectedFault(RuntimeError):
    """Raised where a test asked for a fault; never raised in normal use."""


def _parse(text: str) -> dict[str, tuple[int, float]]:
    """Each stage's passes to fail, first to last (inclusive)."""
    plan: dict[str, tuple[int, float]] = {}
    for item in filter(None, (x.strip() for x in text.split(","))):
        stage, _, when = item.partition(":")
        first, dash, last = when.rstrip("+").partition("-")
        n = int(first or "1")
        plan[stage.strip()] = (n, float("inf") if when.endswith("+") else int(last) if dash else n)
    return plan


_PLAN = _parse(os.environ.get(ENV, ""))
_calls: Counter[str] = Counter()


def inject(stage: str) -> None:
    """Raise here if the test's plan says so."""
    if not _PLAN or stage not in _PLAN:
        return
    _calls[stage] += 1
    first, last = _PLAN[stage]
    if first <= _calls[stage] <= last:
        if stage == "disk_full":
            raise sqlite3.OperationalError("database or disk is full")
        raise InjectedFault(f"injected fault at stage {stage!r} (pass {_calls[stage]})")
