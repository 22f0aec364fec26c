"""The constraint expressions of a campaign file: ``a + 2*b <= 1`` and ``stability >= 0.5``.

Each function returns what it read, or a message saying what is wrong with the text; the
reader (loopctl.spec_reader) puts the field's path in front of it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

from loopctl.schema import NAME_RE
from loopctl.spec_types import (
    CompositionParam,
    IntegerParam,
    LinearConstraint,
    OutcomeConstraint,
    Parameter,
    RangeParam,
)

_TERM_RE = re.compile(
    r"\s*([+-])?\s*(?:(\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)\s*\*?\s*)?"
    r"([A-Za-z_][A-Za-z0-9_.\-]*)\s*"
)
COMPARE_RE = re.compile(r"^(?P<lhs>.+?)(?P<op><=|>=)(?P<rhs>[^<>=]+)$")


def parse_linear(text: str) -> LinearConstraint | str:
    """The constraint, or what is wrong with the expression."""
    m = COMPARE_RE.match(text.strip())
    if m is None:
        return "expected one comparison, <= or >=, with a number on the right"
    try:
        bound = float(m["rhs"])
    except ValueError:
        return f"the right-hand side {m['rhs'].strip()!r} is not a number"
    if not math.isfinite(bound):
        return "the right-hand side must be finite"
    lhs, pos = m["lhs"], 0
    coefficients: dict[str, float] = {}
    while pos < len(lhs):
        t = _TERM_RE.match(lhs, pos)
        if t is None or t.end() == pos or (pos > 0 and t[1] is None):
            return f"cannot read the term starting at {lhs[pos:].strip()!r}; write e.g. '2*a - b'"
        coef = float(t[2]) if t[2] else 1.0
        coef = -coef if t[1] == "-" else coef
        coefficients[t[3]] = coefficients.get(t[3], 0.0) + coef
        pos = t.end()
    terms = tuple((n, c) for n, c in coefficients.items() if c != 0.0)
    if not terms:
        return "names no parameter"
    return LinearConstraint(terms, m["op"], bound, " ".join(text.split()))  # type: ignore[arg-type]


def term_problem(name: str, params: Mapping[str, Parameter]) -> str | None:
    """What is wrong with a term naming ``name``, or None when it names something linear."""
    p = params.get(name)
    if isinstance(p, IntegerParam) or (isinstance(p, RangeParam) and not p.log):
        return None
    if isinstance(p, RangeParam):
        return f"{name!r} is on a log scale; a linear constraint on it is not linear"
    if p is not None:
        return (
            f"{name!r} is a {p.type} parameter; only ranges, integers and "
            "composition fractions can appear"
        )
    base, _, element = name.rpartition(".")
    comp = params.get(base)
    if isinstance(comp, CompositionParam) and element in comp.elements:
        return None
    return f"{name!r} is not a parameter (nor composition.Element) of this campaign"


def parse_outcome(text: str) -> OutcomeConstraint | str:
    """``name >= number`` or ``name <= number``, or what it should look like."""
    m = COMPARE_RE.match(text.strip())
    name = m["lhs"].strip() if m else ""
    try:
        bound = float(m["rhs"]) if m else math.nan
    except ValueError:
        bound = math.nan
    if m is None or not NAME_RE.match(name) or not math.isfinite(bound):
        return "expected 'name >= number' or 'name <= number'"
    return OutcomeConstraint(name, m["op"], bound)  # type: ignore[arg-type]
