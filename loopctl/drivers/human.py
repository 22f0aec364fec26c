"""A person at a bench as a driver: shows each experiment, asks for each outcome.

Entries are checked before they are sent (a number, the campaign's unit if one
is typed, no NaN, confirmation), and carry who entered them, when, and optional
notes. A result goes through the SDK's outbox, so closing the program after
confirming loses nothing; closing it in the middle of an entry puts the trial
back in the queue.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Mapping
from typing import Any

from loopctl.drivers.base import Driver, PutBack, Result, TrialFailed

NUMBER = re.compile(r"^\s*([-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?)\s*(.*?)\s*$")


class Quit(Exception):
    """The person closed the input (Ctrl-D) or typed q."""


class HumanDriver(Driver):
    kind = "human"
    version = "1"

    def __init__(
        self, connect: str, *, operator: str, ask: Callable[[str], str] = input, **kwargs: Any
    ) -> None:
        super().__init__(connect, capacity=1, **kwargs)
        self.operator = operator
        self.ask = ask
        self.units: dict[str, str | None] = {}
        self.params: dict[str, Mapping[str, Any]] = {}

    def setup(self, settings: Mapping[str, Any]) -> None:
        units = settings.get("units") or {}
        self.units = {name: units.get(name) for name in settings.get("objectives", [])}
        self.params = {p["name"]: p for p in settings.get("parameters", [])}
        print(f"Connected as {self.operator}. Waiting for experiments...", flush=True)

    def evaluate(self, parameters: dict[str, Any]) -> Result:
        trial = self.current_trial()
        print(f"\n=== Experiment {trial} ===", flush=True)
        for name, value in parameters.items():
            unit = self.params.get(name, {}).get("unit")
            print(f"  {name} = {_show(value)}{' ' + unit if unit else ''}", flush=True)
        try:
            return self._enter(trial)
        except Quit:
            self.stop("the operator closed the program")
            raise PutBack(f"the operator {self.operator} closed the program") from None

    def _enter(self, trial: str) -> Result:
        print("Type each result. Instead of a value: f = failed, l = later, q = quit.", flush=True)
        while True:
            values: dict[str, float] = {}
            for name, unit in self.units.items():
                answer = self._value(name, unit)
                if answer == "f":
                    reason = self._line("Why did it fail? ") or "failed (no reason given)"
                    raise TrialFailed(f"{reason} (entered by {self.operator})", retryable=False)
                if answer == "l":
                    raise PutBack(f"put back for later by {self.operator}")
                values[name] = float(answer)
            notes = self._line("Method / notes (optional): ")
            shown = ", ".join(
                f"{k} = {v:g}{' ' + (self.units[k] or '')}" for k, v in values.items()
            )
            if self._line(f"Send {shown} for {trial}? [y/n] ").lower().startswith("y"):
                return Result(
                    values,
                    {
                        "operator": self.operator,
                        "notes": notes,
                        "entered_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    },
                )
            print("Not sent; enter the values again.", flush=True)

    def _value(self, name: str, unit: str | None) -> str:
        label = f"{name}{' [' + unit + ']' if unit else ''}: "
        while True:
            text = self._line(label)
            if text.lower() in ("f", "l"):
                return text.lower()
            m = NUMBER.match(text)
            if not m:
                print(f"  '{text}' is not a number; try again", flush=True)
                continue
            typed_unit = m.group(4)
            if typed_unit and typed_unit != (unit or ""):
                print(
                    f"  unit '{typed_unit}' does not match the campaign's "
                    f"{unit or 'unitless value'}; give the value in {unit or 'no unit'}",
                    flush=True,
                )
                continue
            if not math.isfinite(float(m.group(1))):
                print("  the value must be finite", flush=True)
                continue
            return m.group(1)

    def _line(self, prompt: str) -> str:
        try:
            text = self.ask(prompt)
        except EOFError:
            raise Quit from None
        if text.strip().lower() == "q":
            raise Quit
        return text.strip()


def _show(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, dict):
        return " ".join(f"{k}{v:.4g}" for k, v in value.items() if v)
    return str(value)
