"""How a GP proposal's time and memory grow with the number of observations.

    .venv/bin/python bench/scaling.py --sizes 100,500,1000,5000
    .venv/bin/python bench/scaling.py --sizes 200,400 --batch 1,8,32 --pending 200

Hartmann6 (6-d) observations at random points, one proposal of ``--batch`` candidates
(default 1) with the default single-objective strategy, conditioned on ``--pending``
random points still running (default 0: a cluster with N workers has about N); prints
seconds (fit, search, total) and the process's peak resident memory after each size.
Hyperparameters are fitted on at most ``surrogate.MAX_FIT`` points and the GP conditioned on at most
``surrogate.MAX_CONDITION``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import resource
import time

import numpy as np
import torch
from botorch.test_functions import Hartmann

from loopctl.space import Space
from loopctl.spec import parse_spec
from loopctl.strategies.base import CampaignData, Observation
from loopctl.strategies.botorch_gp import BotorchStrategy


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="100,500,1000,5000")
    ap.add_argument("--batch", default="1", help="candidates per proposal, e.g. 1,8,32")
    ap.add_argument("--pending", type=int, default=0, help="running trials to condition on")
    args = ap.parse_args()
    spec = parse_spec(
        {
            "name": "scaling",
            "space": [{"name": f"x{i}", "type": "range", "bounds": [0, 1]} for i in range(6)],
            "objectives": [{"name": "y", "goal": "minimize"}],
            "budget": {"trials": 10_000},
        }
    )
    space = Space.for_spec(spec)
    f = Hartmann(dim=6)
    head = ("n", 6), ("q", 4), ("pending", 7), ("fit s", 8), ("search s", 9), ("total s", 8)
    print(" ".join(f"{h:>{w}}" for h, w in head), f"{'peak MB':>8}")
    batches = [int(b) for b in args.batch.split(",")]
    for n in (int(s) for s in args.sizes.split(",")):
        x = np.random.default_rng(n).random((n, 6))
        y = f(torch.tensor(x)).numpy()
        obs = tuple(
            Observation(
                f"T{i}", {f"x{j}": float(x[i, j]) for j in range(6)}, {"y": (float(y[i]), None)}
            )
            for i in range(n)
        )
        running = np.random.default_rng(n + 1).random((args.pending, 6))
        pending = tuple({f"x{j}": float(p[j]) for j in range(6)} for p in running)
        data = CampaignData(spec, space, obs, (), pending, 0, 0)
        for q in batches:
            t = time.perf_counter()
            d = BotorchStrategy().propose(data, q).diagnostics
            total = time.perf_counter() - t
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            print(
                f"{n:>6} {q:>4} {args.pending:>7} {d['fit_time_s']:>8.2f} "
                f"{d['opt_time_s']:>9.2f} {total:>8.2f} {peak:>8.0f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
