"""Fault injection for tests of the controller's own failure handling; inert by default.

The tests that prove no failure of the event loop is silent need a controller that
is a real separate process, fails at a chosen stage, and is otherwise untouched. They
set ``LOOPCTL_FAULTS`` in that process's environment, e.g.::

    LOOPCTL_FAULTS="propose:2+,dispatch:5"

``STAGE:N`` raises :class:`InjectedFault` on the N-th pass through that stage only;
``STAGE:N+`` on the N-th and every later pass. Stages are named where
:func:`inject` is called (receive, decode, handle, commit, propose, dispatch). Without
the variable, :func:`inject` is one dictionary look-up.
"""

from __future__ import annotations

import os
from collections import Counter

ENV = "LOOPCTL_FAULTS"


class InjectedFault(RuntimeError):
    """Raised where a test asked for a fault; never raised in normal use."""


def _parse(text: str) -> dict[str, tuple[int, bool]]:
    plan: dict[str, tuple[int, bool]] = {}
    for item in filter(None, (x.strip() for x in text.split(","))):
        stage, _, when = item.partition(":")
        repeat = when.endswith("+")
        plan[stage.strip()] = (int(when.rstrip("+") or "1"), repeat)
    return plan


_PLAN = _parse(os.environ.get(ENV, ""))
_calls: Counter[str] = Counter()


def inject(stage: str) -> None:
    """Raise here if the test's plan says so."""
    if not _PLAN or stage not in _PLAN:
        return
    _calls[stage] += 1
    n, repeat = _PLAN[stage]
    if _calls[stage] == n or (repeat and _calls[stage] > n):
        raise InjectedFault(f"injected fault at stage {stage!r} (pass {_calls[stage]})")
