"""Typed access to the fields of a decoded YAML mapping that records problems instead of
raising at the first one, each prefixed with the path of its field (``space[2].bounds``).

The messages here are the ones users read (docs/campaign-file.md quotes them and
tests/test_spec.py checks them): change them only on purpose.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Mapping
from typing import Any

from loopctl.schema import NAME_RE, Field


class Reader:
    """Typed field access that records problems instead of raising at the first one."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def problem(self, where: str, message: str) -> None:
        self.problems.append(f"{where}: {message}")

    @staticmethod
    def at(path: str, key: str) -> str:
        return f"{path}.{key}" if path else key

    def unknown_keys(self, d: Mapping[str, Any], path: str, allowed: Collection[str]) -> None:
        for key in d:
            if key not in allowed:
                self.problem(
                    self.at(path, str(key)),
                    f"unknown field; expected one of {', '.join(sorted(allowed))}",
                )

    def field(self, d: Mapping[str, Any], path: str, f: Field, fallback: Any = None) -> Any:
        """The value of a plain field (loopctl.schema) of ``d``, checked as the table says.

        Absent (or null) it is the field's default, or ``fallback`` for a required one; so is
        a wrong value, which is recorded as a problem.
        """
        default = fallback if f.required else f.default
        if f.kind == "name":
            return self.string(d, f.name, path, required=f.required, pattern=NAME_RE)
        if f.kind in ("text", "choice"):
            return self.string(
                d, f.name, path, required=f.required, choices=f.choices, default=default
            )
        if f.kind == "integer":
            if default is None:  # optional and without a default: None when absent
                if d.get(f.name) is None:
                    return None
                default = 0
            low = None if f.low is None else int(f.low)
            return self.integer(d, f.name, path, default=default, low=low)
        if f.kind == "number":
            return self.number(
                d,
                f.name,
                path,
                default=default,
                required=f.required,
                low=f.low,
                high=f.high,
                positive=f.positive,
            )
        if f.kind == "boolean":
            return self.boolean(d, f.name, path, default, f.choices)
        if f.kind == "mapping":
            return self.mapping(d.get(f.name), self.at(path, f.name))
        raise ValueError(f"{f.name}: a {f.kind} field has its own reader")

    def mapping(self, value: Any, path: str) -> Mapping[str, Any] | None:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.problem(path, f"must be a mapping, got {kind_of(value)}")
            return None
        return value

    def string(
        self,
        d: Mapping[str, Any],
        key: str,
        path: str,
        *,
        required: bool = False,
        pattern: re.Pattern[str] | None = None,
        choices: tuple[str, ...] = (),
        default: str | None = None,
    ) -> str | None:
        where = self.at(path, key)
        if key not in d or d[key] is None:
            if required:
                self.problem(where, "is required")
            return default
        v = d[key]
        if not isinstance(v, str) or not v.strip():
            self.problem(where, f"must be a non-empty string, got {kind_of(v)}")
            return default
        if pattern is not None and not pattern.match(v):
            self.problem(
                where,
                f"{v!r} is not a valid name (letters, digits, _ . -; "
                "must start with a letter or _)",
            )
            return default
        if choices and v not in choices:
            self.problem(where, f"{v!r} is not one of {', '.join(choices)}")
            return default
        return v

    def number(
        self,
        d: Mapping[str, Any],
        key: str,
        path: str,
        *,
        default: float | None = None,
        required: bool = False,
        low: float | None = None,
        high: float | None = None,
        positive: bool = False,
    ) -> float | None:
        where = self.at(path, key)
        if key not in d or d[key] is None:
            if required:
                self.problem(where, "is required")
            return default
        return self.check_number(
            d[key], where, low=low, high=high, positive=positive, default=default
        )

    def check_number(
        self,
        v: Any,
        where: str,
        *,
        default: float | None = None,
        low: float | None = None,
        high: float | None = None,
        positive: bool = False,
    ) -> float | None:
        if isinstance(v, str):  # any spelling float() reads: quoted, 1_000.5, ' 2.5 '
            try:
                x = float(v)
            except ValueError:
                self.problem(where, f"must be a number, got {kind_of(v)}")
                return default
        elif isinstance(v, bool) or not isinstance(v, (int, float)):
            self.problem(where, f"must be a number, got {kind_of(v)}")
            return default
        else:
            x = float(v)
        if not math.isfinite(x):
            self.problem(where, f"must be a finite number, got {v!r}")
            return default
        if positive and x <= 0:
            self.problem(where, f"must be greater than 0, got {v}")
            return default
        if low is not None and x < low:
            self.problem(where, f"must be at least {low:g}, got {v}")
            return default
        if high is not None and x > high:
            self.problem(where, f"must be at most {high:g}, got {v}")
            return default
        return x

    def integer(
        self, d: Mapping[str, Any], key: str, path: str, *, default: int, low: int | None = None
    ) -> int:
        where = self.at(path, key)
        if key not in d or d[key] is None:
            return default
        v = d[key]
        if isinstance(v, bool) or not isinstance(v, int):
            self.problem(where, f"must be a whole number, got {kind_of(v)}")
            return default
        if low is not None and v < low:
            self.problem(where, f"must be at least {low}, got {v}")
            return default
        return v

    def boolean(
        self, d: Mapping[str, Any], key: str, path: str, default: bool, words: tuple[str, ...] = ()
    ) -> bool | str:
        """``true`` or ``false``, or one of ``words`` where a field allows more (``auto``)."""
        v = d.get(key, default)
        if not isinstance(v, bool) and v not in words:
            allowed = ", ".join(["true", "false", *words])
            self.problem(self.at(path, key), f"must be one of {allowed}, got {kind_of(v)}")
            return default
        return v


def kind_of(v: Any) -> str:
    if v is None:
        return "nothing"
    if isinstance(v, bool):
        return f"a boolean ({v})"
    if isinstance(v, str):
        return f"the text {v!r}"
    if isinstance(v, (int, float)):
        return f"the number {v}"
    if isinstance(v, Mapping):
        return "a mapping"
    if isinstance(v, list):
        return "a list"
    return type(v).__name__


def pair(r: Reader, v: Any, where: str) -> tuple[float, float] | None:
    if not isinstance(v, list) or len(v) != 2:
        r.problem(where, f"must be a list of two numbers [lower, upper], got {kind_of(v)}")
        return None
    lo = r.check_number(v[0], f"{where}[0]")
    hi = r.check_number(v[1], f"{where}[1]")
    if lo is None or hi is None:
        return None
    if lo > hi:
        r.problem(where, f"lower bound {v[0]} is above upper bound {v[1]}")
        return None
    return lo, hi
