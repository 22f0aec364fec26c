"""How a GP proposal's time and memory grow with the number of observations.

    .venv/bin/python bench/scaling.py --sizes 100,500,1000,5000

Hartmann6 (6-d) observations at random points, one proposal of one candidate
with the default single-objective strategy; prints seconds (fit, search, total)
and the process's peak resident memory after each size. Hyperparameters are
fitted on at most ``surrogate.MAX_FIT`` points and the GP conditioned on at most
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
    print(f"{'n':>6} {'fit s':>8} {'search s':>9} {'total s':>8} {'peak MB':>8}")
    for n in (int(s) for s in args.sizes.split(",")):
        x = np.random.default_rng(n).random((n, 6))
        y = f(torch.tensor(x)).numpy()
        obs = tuple(
            Observation(
                f"T{i}", {f"x{j}": float(x[i, j]) for j in range(6)}, {"y": (float(y[i]), None)}
            )
            for i in range(n)
        )
        data = CampaignData(spec, space, obs, (), (), 0, 0)
        t = time.perf_counter()
        d = BotorchStrategy().propose(data, 1).diagnostics
        total = time.perf_counter() - t
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"{n:>6} {d['fit_time_s']:>8.2f} {d['opt_time_s']:>9.2f} {total:>8.2f} {peak:>8.0f}")


if __name__ == "__main__":
    main()
