"""Scrambled Sobol design: the initial design and the model-free baseline."""

from __future__ import annotations

import time

from scipy.stats import qmc

from loopctl.strategies.base import CampaignData, Candidate, Proposal

VERSION = "1"


class SobolStrategy:
    """Continues one scrambled sequence per campaign, so restarts never repeat points."""

    name = "sobol"

    def model_free(self, completed: int, pending: int) -> bool:
        return True

    def propose(self, data: CampaignData, n: int) -> Proposal:
        t0 = time.perf_counter()
        dim = data.space.sobol_dim()
        candidates: list[Candidate] = []
        drawn = 0
        engine = qmc.Sobol(d=dim, scramble=True, seed=data.spec.seed)
        if data.sobol_drawn:
            engine.fast_forward(data.sobol_drawn)
        # a continuous coordinate never repeats in a Sobol sequence; discrete spaces can
        seen: set[tuple[object, ...]] | None = None
        if data.space.discrete:
            seen = {data.space.key(p) for p in data.pending + data.rejected}
            seen |= {data.space.key(o.parameters) for o in data.completed}
        while len(candidates) < n and drawn < 64 * n + 64:
            u = engine.random(1)[0]
            drawn += 1
            values = data.space.from_unit(u)
            if seen is not None:
                k = data.space.key(values)
                if k in seen:  # never send a repeat
                    continue
                seen.add(k)
            candidates.append(Candidate(values))
        return Proposal(
            strategy=self.name,
            version=VERSION,
            seed=data.spec.seed,
            candidates=candidates,
            diagnostics={
                "sobol_index_start": data.sobol_drawn,
                "time_total_s": time.perf_counter() - t0,
            },
            sobol_drawn=drawn,
        )
