"""Offline screen of surrogate-selection rules on recorded backtest trajectories.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/selection_screen.py \\
        DIR/levy4-0-grid.yaml DIR/levy4-0-grid.csv OUT/runs.jsonl --arm auto --runs 6

For each recorded run of ``--arm`` (a ``runs.jsonl`` that ``loopctl backtest`` wrote) and
each checkpoint (``--at``, trials), the campaign's data at that point are rebuilt and
``selection.choose`` scores the GP and the forest under both rules (leave-one-out, and one
step ahead over the last trials). One JSON line per (run, checkpoint) on stdout: the two
models' scores. This tells, before any live run, where a rule would hand the proposal to
the forest; it cannot tell what the forest would then do (the trajectory changes), which is
what a backtest measures.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from loopctl.backtest.runner import Arm, _spec, campaign_spec
from loopctl.backtest.scenario import load_scenario
from loopctl.space import Space
from loopctl.strategies import selection, surrogate
from loopctl.strategies.base import CampaignData, Observation


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("campaign", type=Path)
    ap.add_argument("data", type=Path)
    ap.add_argument("runs", type=Path, help="runs.jsonl written by loopctl backtest")
    ap.add_argument("--arm", default="auto", help="the recorded strategy label to replay")
    ap.add_argument("--runs", type=int, default=6, dest="n_runs", help="at most this many runs")
    ap.add_argument("--at", default="20,35,50,70", help="checkpoints, in trials")
    args = ap.parse_args(argv)
    scenario = load_scenario(args.campaign, args.data)
    records = [json.loads(line) for line in args.runs.read_text().splitlines() if line.strip()]
    records = [r for r in records if r["arm"] == args.arm][: args.n_runs]
    arm = Arm.parse("screen=auto,surrogate=auto")
    for rec in records:
        spec = _spec(scenario, campaign_spec(scenario, arm, rec["seed"], len(rec["order"]), 2))
        assert spec.pool is not None, "a pool campaign"
        space = Space(spec.space, spec.parameter_constraints)
        for k in (int(v) for v in args.at.split(",")):
            if k > len(rec["order"]):
                continue
            rows = [spec.pool.rows[r] for r in rec["order"][:k]]
            values = [float(scenario.values[r]) for r in rec["order"][:k]]
            completed = tuple(
                Observation(f"t{i}", dict(row), {scenario.objective: (v, None)})
                for i, (row, v) in enumerate(zip(rows, values, strict=True))
            )
            data = CampaignData(spec, space, completed, (), (), k, 0)
            tr = surrogate.training_data(data, [])
            choice = selection.choose(data, tr, [], rule="prequential")
            print(json.dumps({"seed": rec["seed"], "trials": k, "scores": choice.scores}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
