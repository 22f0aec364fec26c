"""Live progress for a person watching a campaign: a bar on a terminal, lines otherwise."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any

from loopctl.values import formula

if TYPE_CHECKING:
    from loopctl.controller import RunProgress


def describe_best(best: dict[str, Any] | None) -> str:
    if best is None:
        return "no result yet"
    return f"{best['objective']} = {best['value']:.6g} at {format_parameters(best['parameters'])}"


def describe_simulated(best: dict[str, Any] | None) -> str | None:
    """The composition a simulation computed instead of the one asked for, when its result
    says so: the EMT oracle's 32-atom cell holds fractions in steps of 1/32 only."""
    meta = (best or {}).get("metadata") or {}
    if "simulated_cell" not in meta:
        return None
    return f"simulated as {meta['simulated_cell']} ({meta.get('simulated_composition', '?')})"


def format_parameters(params: dict[str, Any]) -> str:
    parts = []
    for k, v in params.items():
        if isinstance(v, dict):
            parts.append(formula(v, digits=3))
        elif isinstance(v, float):
            parts.append(f"{k}={v:.4g}")
        else:
            parts.append(f"{k}={v}")
    return ", ".join(parts)


class TerminalReporter:
    """rich progress bar when stdout is a terminal; one line per completed trial when not."""

    def __init__(self, title: str, force_plain: bool = False, db: str = "DB") -> None:
        self.db = db
        self.title = title
        self.tty = sys.stdout.isatty() and not force_plain
        self._last_completed = -1
        self._progress: Any = None
        self._task: Any = None
        if self.tty:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("{task.fields[best]}"),
                transient=False,
            )
            self._task = self._progress.add_task(title, total=None, best="")
            self._progress.start()

    def update(self, s: RunProgress) -> None:
        best = describe_best(s.best) if s.best else "waiting for results"
        info = f"best {best} | running {s.running} | drivers {s.drivers}"
        if self._progress is not None:
            self._progress.update(self._task, total=s.target, completed=s.completed, best=info)
        elif s.completed != self._last_completed:
            print(f"[{s.completed}/{s.target}] {info}", flush=True)
        self._last_completed = s.completed

    def result(self, trial: dict[str, Any], outcome: str, value: float, driver: str) -> None:
        """One line per result above the bar (a terminal only; logs say it otherwise)."""
        if self._progress is not None:
            params = format_parameters(trial.get("parameters", {}))
            self._progress.console.print(
                f"[dim]{time.strftime('%H:%M:%S')}[/] {trial.get('id')} {outcome} = {value:.6g}"
                f"  [dim]{params} ({driver})[/]",
                highlight=False,
            )

    def waiting(self, trial_id: str, parameters: dict[str, Any]) -> None:
        """A proposal the operator must approve: say so where they are looking."""
        line = (
            f"{time.strftime('%H:%M:%S')} {trial_id} waits for approval: "
            f"{format_parameters(parameters)}  (loopctl approve {self.db} {trial_id}, or reject)"
        )
        if self._progress is not None:
            self._progress.console.print(line, highlight=False, markup=False)
        else:
            print(line, flush=True)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
