"""Maximising an acquisition over a campaign's space, one candidate at a time.

Shared by the model-based strategies, so that every one of them honours the
same rules: compositions sum to one exactly, linear constraints hold,
choices are searched as categories (every combination, or a seeded sample
of them when there are many), a pool is searched row by row, and no
candidate repeats a completed, pending, rejected or failed one. The batch is
built greedily: each decoded pick becomes a pending point before the next,
which also covers rounding that the optimiser cannot see.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from botorch.acquisition import AcquisitionFunction
from botorch.optim import optimize_acqf
from botorch.optim.initializers import initialize_q_batch
from scipy.stats import qmc

from loopctl.space import EqualityConstraint, Space, simplex_shift
from loopctl.strategies.base import CampaignData
from loopctl.strategies.surrogate import tensor

MAXITER = 200
MAX_COMBINATIONS = 12  # categorical combinations searched per pick
POOL_CHUNK = 256

Key = tuple[Any, ...]


@dataclass
class Pick:
    values: dict[str, Any]
    acq: float


class Search:
    def __init__(
        self,
        data: CampaignData,
        acq: AcquisitionFunction,
        notes: list[str],
        effort: float = 1.0,
    ) -> None:
        """``effort`` scales restarts and raw samples (hypervolume acquisitions cost
        several times more per evaluation than EI, for a similar benefit per restart)."""
        self.data, self.space, self.acq, self.notes = data, data.space, acq, notes
        space, d = self.space, self.space.dim
        avoid = list(data.pending) + list(data.rejected)
        # rejected candidates are pending for the model too: it sees no gain in going there
        self.base_pending = [tensor(space.encode_many(avoid))] if avoid else []
        self.chosen: list[torch.Tensor] = []
        self.seen: set[Key] = {space.key(p) for p in avoid + list(data.failed)}
        self.seen |= {space.key(o.parameters) for o in data.completed}
        self.acq.set_X_pending(self._pending())
        cont = d - len(space.cat_dims)
        # floors of 6 and 256: with 2 and 77 (the old floors with effort 0.6), EHVI on
        # BraninCurrin missed the better of its optima in 4 of 10 runs (median final
        # log10 HV gap -1.10, against -1.19 with the floors, for 0.04 s more a proposal)
        self.restarts = max(6, round(effort * min(10, 2 + cont)))
        self.raw_samples = max(256, round(effort * min(512, 64 * max(cont, 1))))
        self.method = "pool" if space.pool else "box"
        if space.equalities and not space.pool:
            simple = _projectable(space) and not space.inequalities
            self.method = "projection" if simple else "slsqp"
            if self.method == "slsqp":
                self.restarts = min(self.restarts, 4)  # SLSQP costs ~5x L-BFGS-B per restart
        elif space.inequalities:
            self.method = "slsqp"
        self.combinations = self._combinations()

    def run(self, n: int) -> list[Pick]:
        picks = []
        for i in range(n):
            pick = self._next(i)
            if pick is None:
                self.notes.append(f"no new candidate left for pick {i + 1}; the batch is shorter")
                break
            picks.append(pick)
        return picks

    # ------------------------------------------------------------------ one pick

    def _next(self, i: int) -> Pick | None:
        if self.method == "pool":
            return self._best_pool_row()
        seed = self.data.seed + 7919 * i
        if len(self.combinations) > 1 and self.method != "slsqp":
            x, _ = self._optimise(seed, fixed={}, starts=self._mixed_starts(seed))
        else:
            best: tuple[float, torch.Tensor] | None = None
            for combo in self.combinations:
                x, value = self._optimise(seed, fixed=combo)
                if best is None or value > best[0]:
                    best = (value, x)
            assert best is not None
            x = best[1]
        values = self.space.decode(x.numpy())
        if self.space.key(values) in self.seen or self.space.violated(values):
            self.notes.append(
                f"pick {i + 1} repeated a known point (or broke a constraint) after "
                "rounding; replaced by the best new quasi-random sample"
            )
            found = self._best_new_sample()
            if found is None:
                return None
            values = found
        return self._accept(values)

    def _accept(self, values: dict[str, Any]) -> Pick:
        x = tensor(self.space.encode(values)).unsqueeze(0)
        with torch.no_grad():
            acq = float(self.acq(x.unsqueeze(0)))
        self.seen.add(self.space.key(values))
        self.chosen.append(x)
        self.acq.set_X_pending(self._pending())
        return Pick(values, acq)

    def _pending(self) -> torch.Tensor | None:
        parts = self.base_pending + self.chosen
        return torch.cat(parts, dim=0) if parts else None

    def _optimise(
        self, seed: int, fixed: Mapping[int, float], starts: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, float]:
        """``starts`` (restarts x 1 x d) keep their own categories while the rest moves."""
        space = self.space
        bounds = tensor(space.bounds)
        acq = self._box_acq()
        eq = ineq = None
        if self.method == "slsqp":
            eq = [
                (torch.tensor(c.indices), tensor(c.coefficients), float(c.rhs))
                for c in space.equalities
            ] or None
            ineq = [
                (torch.tensor(c.indices), tensor(c.coefficients), float(c.rhs))
                for c in space.inequalities
            ] or None
        per_start: dict[int, float | torch.Tensor] = dict(fixed)
        if starts is not None:
            per_start |= {d: starts[:, 0, d] for d in space.cat_dims}
        x, value = optimize_acqf(
            acq,
            bounds=bounds,
            q=1,
            num_restarts=self.restarts if starts is None else len(starts),
            raw_samples=self.raw_samples if starts is None else None,
            batch_initial_conditions=starts,
            options={"seed": seed, "maxiter": MAXITER},
            # a failed line search in one restart does not rerun them all from new
            # starting points: the best of the others stands (the warning is kept)
            retry_on_optimization_warning=False,
            fixed_features=per_start or None,
            equality_constraints=eq,
            inequality_constraints=ineq,
        )
        x = x.detach().reshape(1, -1)
        if isinstance(acq, _Projected):
            x = acq.to_x(x)
        return x.reshape(-1), float(value.reshape(-1)[0]) if value is not None else -np.inf

    def _box_acq(self) -> AcquisitionFunction:
        """The acquisition as the optimiser sees it: over the box of per-element bounds
        when compositions are projected onto their simplex."""
        if self.method == "projection":
            return _Projected(self.acq, self.space.equalities, tensor(self.space.bounds))
        return self.acq

    # ------------------------------------------------------------------ categories

    def _combinations(self) -> list[dict[int, float]]:
        """Every combination of choices, or a seeded sample when there are many."""
        if not self.space.cat_dims or self.method == "pool":
            return [{}]
        levels = [range(int(self.space.bounds[1, i]) + 1) for i in self.space.cat_dims]
        total = int(np.prod([len(lv) for lv in levels]))
        if total <= MAX_COMBINATIONS:
            combos = list(itertools.product(*levels))
        else:
            rng = np.random.default_rng(self.data.seed)
            combos = list({tuple(int(rng.integers(len(lv))) for lv in levels) for _ in range(64)})[
                :MAX_COMBINATIONS
            ]
            self.notes.append(
                f"{total} combinations of choices: searched a seeded sample of {len(combos)}"
            )
        if self.method == "slsqp":  # searched one combination after another
            self.restarts = max(2, self.restarts // min(len(combos), 3))
        return [{d: float(v) for d, v in zip(self.space.cat_dims, c, strict=True)} for c in combos]

    def _mixed_starts(self, seed: int) -> torch.Tensor:
        """Starting points drawn across all combinations at once, so one batched
        L-BFGS-B run searches them together: each start keeps its combination.

        Searching combination after combination ran the raw samples and the
        optimiser once per combination (three solvents: 0.86 s of a 1.28 s
        two-objective proposal).
        """
        space, combos = self.space, self.combinations
        n = max(self.raw_samples, 64 * len(combos))
        bounds = tensor(space.bounds)
        engine = torch.quasirandom.SobolEngine(space.dim, scramble=True, seed=seed)
        raw = bounds[0] + (bounds[1] - bounds[0]) * engine.draw(n, dtype=bounds.dtype)
        for j, combo in enumerate(combos):  # round robin: every combination gets n / k
            for d, v in combo.items():
                raw[j :: len(combos), d] = v
        raw, acq = raw.unsqueeze(1), self._box_acq()
        with torch.no_grad():
            vals = torch.cat([acq(raw[j : j + POOL_CHUNK]) for j in range(0, n, POOL_CHUNK)])
        starts, _ = initialize_q_batch(raw, vals, n=self.restarts)
        return starts

    # ------------------------------------------------------------------ finite sets

    def _best_pool_row(self) -> Pick | None:
        space = self.space
        free = [i for i, row in enumerate(space.pool) if space.key(row) not in self.seen]
        if not free:
            return None
        x = tensor(space.pool_x[free]).unsqueeze(1)
        with torch.no_grad():
            vals = torch.cat(
                [self.acq(x[j : j + POOL_CHUNK]) for j in range(0, len(x), POOL_CHUNK)]
            )
        return self._accept(dict(space.pool[free[int(torch.argmax(vals))]]))

    def _best_new_sample(self) -> dict[str, Any] | None:
        """Feasible quasi-random points ranked by the acquisition."""
        space = self.space
        rows = [
            v
            for v in _sobol_values(space, self.data.seed, 4 * self.raw_samples)
            if space.key(v) not in self.seen and not space.violated(v)
        ]
        if not rows:
            return None
        x = tensor(space.encode_many(rows)).unsqueeze(1)
        with torch.no_grad():
            vals = self.acq(x)
        return rows[int(torch.argmax(vals))]


def _sobol_values(space: Space, seed: int, count: int) -> list[dict[str, Any]]:
    engine = qmc.Sobol(d=max(space.sobol_dim(), 1), scramble=True, seed=seed)
    return [space.from_unit(u) for u in engine.random(count)]


# ---------------------------------------------------------------------- compositions


def _projectable(space: Space) -> bool:
    """Equalities that are plain sums over disjoint blocks: the projection handles those."""
    used: set[int] = set()
    for c in space.equalities:
        if any(a != 1.0 for a in c.coefficients) or used & set(c.indices):
            return False
        used |= set(c.indices)
    return True


class _Projected(AcquisitionFunction):
    """The acquisition at the Euclidean projection of z onto each composition's polytope.

    Every feasible x projects to itself, so the box of per-element bounds covers
    the whole feasible set and the equality disappears from the optimiser:
    plain L-BFGS-B instead of SLSQP, measured 5-10x faster on a 5-element
    simplex for the same optimum.
    """

    def __init__(
        self,
        inner: AcquisitionFunction,
        equalities: Sequence[EqualityConstraint],
        bounds: torch.Tensor,
    ) -> None:
        super().__init__(model=inner.model)
        self.inner = inner
        self.blocks = [
            (list(c.indices), bounds[0, list(c.indices)], bounds[1, list(c.indices)], c.rhs)
            for c in equalities
        ]

    def to_x(self, z: torch.Tensor) -> torch.Tensor:
        x = z.clone()
        for idx, lo, hi, total in self.blocks:
            x[..., idx] = project(z[..., idx], lo, hi, total)
        return x

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.inner(self.to_x(z))


def project(y: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, total: float) -> torch.Tensor:
    """Batched projection onto {sum x = total, lo <= x <= hi}, differentiable almost everywhere.

    The shift t in x = clip(y - t, lo, hi) comes from the same exact algorithm as
    ``project_to_simplex`` (``loopctl.space.simplex_shift``, in numpy, outside the
    autograd graph); x is then recomputed here from the free coordinates, in torch, so
    that gradients flow to the optimiser.
    """
    with torch.no_grad():
        t = torch.as_tensor(
            simplex_shift(
                y.detach().cpu().numpy(), lo.cpu().numpy(), hi.cpu().numpy(), float(total)
            ),
            dtype=y.dtype,
            device=y.device,
        )
        clipped = torch.clamp(y - t, lo, hi)
        free = (y - t > lo) & (y - t < hi)
    rest = total - (clipped * ~free).sum(dim=-1, keepdim=True)
    n_free = free.sum(dim=-1, keepdim=True).clamp_min(1)
    shift = ((y * free).sum(dim=-1, keepdim=True) - rest) / n_free
    return torch.where(free, y - shift, clipped)
