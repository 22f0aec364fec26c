"""Backtests: replay a strategy against past measurements, many seeds, and score it.

``backtest(campaign, data, ...)`` runs every (strategy, seed) pair as its own
in-memory campaign (:mod:`.runner`), several at a time in worker processes,
appends each finished run to ``runs.jsonl`` in the output folder (a rerun skips
the runs already there), and writes ``summary.json``, ``summary.md`` and
``top.png`` (:mod:`.report`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loopctl.backtest.report import markdown, plot, summarise
from loopctl.backtest.runner import Arm, run
from loopctl.backtest.scenario import BacktestError, Scenario, load_scenario

__all__ = ["Arm", "BacktestError", "Result", "backtest", "load_scenario"]

RUNS = "runs.jsonl"


@dataclass(frozen=True)
class Result:
    summary: dict[str, Any]
    markdown: str
    out: Path


def backtest(
    campaign: str | Path,
    data: str | Path,
    *,
    strategies: Sequence[str | Arm] = ("auto", "random"),
    seeds: int | Iterable[int] = 20,
    budget: int | None = None,
    batch: int = 1,
    initial: int | None = None,
    workers: int | None = None,
    out: str | Path = "backtest",
    columns: Mapping[str, str] | None = None,
    progress: Callable[[int, int, Mapping[str, Any] | None], None] | None = None,
) -> Result:
    """Score ``strategies`` on ``campaign``'s candidates with the outcomes in ``data``.

    ``budget`` defaults to the campaign's trials (capped at the pool's size);
    ``initial`` overrides the number of initial (random) trials, e.g. 2 for Liang
    et al.'s protocol; ``progress(done, total, record)`` is called once before the first
    run (with ``record=None``) and after each run.
    """
    scenario = load_scenario(campaign, data, columns)
    arms = [a if isinstance(a, Arm) else Arm.parse(a) for a in strategies]
    labels = [a.label for a in arms]
    if len(set(labels)) != len(labels):
        raise BacktestError(f"two strategies share a label: {', '.join(labels)}")
    seed_list = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    horizon = min(budget or _campaign_budget(scenario), scenario.n_pool)
    if batch < 1 or horizon < 1:
        raise BacktestError("batch and budget must be at least 1")
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    settings = {"budget": horizon, "batch": batch, "initial": initial}
    records = _done(folder / RUNS, settings)
    finished = {(r["arm"], r["seed"]) for r in records}
    todo = [(a, s) for a in arms for s in seed_list if (a.label, s) not in finished]
    total, done = len(arms) * len(seed_list), len(arms) * len(seed_list) - len(todo)
    if progress is not None:
        progress(done, total, None)
    with (folder / RUNS).open("a", encoding="utf-8") as log:
        for record in _execute(scenario, todo, settings, workers):
            record["settings"] = settings
            log.write(json.dumps(record) + "\n")
            log.flush()
            records.append(record)
            done += 1
            if progress is not None:
                progress(done, total, record)
    wanted = {(a.label, s) for a in arms for s in seed_list}
    chosen = [r for r in records if (r["arm"], r["seed"]) in wanted]
    chosen.sort(key=lambda r: (labels.index(r["arm"]), r["seed"]))
    summary = summarise(scenario, chosen, horizon) | {"settings": settings}
    text = markdown(summary)
    (folder / "summary.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    (folder / "summary.md").write_text(text, encoding="utf-8")
    plot(summary, folder / "top.png")
    return Result(summary, text, folder)


def _campaign_budget(scenario: Scenario) -> int:
    return int(scenario.raw.get("budget", {}).get("trials", scenario.n_pool))


def _done(path: Path, settings: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Runs already in the folder; refuses to mix runs made with other settings."""
    if not path.exists():
        return []
    records = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a run cut off mid-write is run again
        if record.get("settings") != dict(settings):
            raise BacktestError(
                f"{path} line {n} was made with {record.get('settings')}, not {dict(settings)}: "
                "use another --out folder, or the same settings"
            )
        records.append(record)
    return records


def _execute(
    scenario: Scenario,
    todo: list[tuple[Arm, int]],
    settings: Mapping[str, Any],
    workers: int | None,
) -> Iterable[dict[str, Any]]:
    """Runs in finishing order; in this process when one worker is asked for."""
    args = (settings["budget"], settings["batch"], settings["initial"])
    n = min(workers or (os.cpu_count() or 1), len(todo))
    if n <= 1:
        for arm, seed in todo:
            yield run(scenario, arm, seed, *args)
        return
    import multiprocessing

    # each worker owns one core: two torch threads per worker would fight over them
    os.environ.setdefault("LOOPCTL_TORCH_THREADS", "1")
    ctx = multiprocessing.get_context("spawn")  # torch and forked threads do not mix
    with ProcessPoolExecutor(n, mp_context=ctx) as pool:
        queue = list(todo)
        running: set[Future[dict[str, Any]]] = set()
        while queue or running:
            while queue and len(running) < n:
                arm, seed = queue.pop(0)
                running.add(pool.submit(run, scenario, arm, seed, *args))
            finished, running = wait(running, return_when=FIRST_COMPLETED)
            for f in finished:
                yield f.result()
