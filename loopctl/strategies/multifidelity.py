"""Several fidelities: one GP over every level, and a level chosen by value per unit cost.

The model is BoTorch's multi-task GP (an ICM kernel: a kernel over the parameters times a
learned positive covariance between levels, a mean and a noise per level). It is not told
that the levels agree: how much a cheap measurement says about the target level is the
learned correlation between them, and a cheap level that turns out unrelated is simply
not worth its cost.

The acquisition is Huang et al.'s augmented expected improvement (J. Glob. Optim. 34,
441, 2006), for every candidate ``x`` and level ``l``::

    a(x, l) = EI_target(x) * corr(f_target(x), y_l(x)) * cost_target / cost_l

the expected improvement of the target level, times how strongly a measurement at level
``l`` (noise included) is correlated with the target's value there under the current
posterior, per unit of cost. At the target level the correlation is that of a noisy
measurement with its own truth (near 1); at a cheap level it falls as the levels
disagree or once the cheap value at ``x`` is already known. Each proposal records, per
level, its best candidate and the three factors, and why the level chosen won.

Candidates are the pool's rows, or a seeded Sobol sample of the space plus seeded
Gaussian steps around the points the model rates best at the target (no gradient search;
without the steps the target's regret stalled at the Sobol spacing: bench/mfgen.py).
A batch is the best ``n`` pairs with distinct parameters,
within what the cost budget has left. Deterministic for a given seed and data.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import botorch
import numpy as np
import torch
from botorch.models import MultiTaskGP
from botorch.models.transforms import Standardize
from scipy.stats import qmc

from loopctl.spec_types import Fidelities
from loopctl.strategies import multitask, surrogate
from loopctl.strategies.base import CampaignData, Candidate, Proposal

DTYPE = torch.float64
SOBOL_CANDIDATES = 1024  # continuous spaces: the candidate set the acquisition ranks
CHUNK = 512  # candidates per posterior evaluation
LOCAL_CENTRES = 5  # continuous spaces: perturbed best points added to the candidates
LOCAL_PER_CENTRE = 60
LOCAL_STEPS = (0.1, 0.03, 0.01)  # of each range


class MultiFidelityStrategy:
    """Multi-task GP over the levels; augmented EI per unit cost chooses (candidate, level)."""

    name = "multifidelity"

    def propose(self, data: CampaignData, n: int) -> Proposal:
        fid = data.spec.fidelities
        if fid is None:
            raise ValueError("the multi-fidelity strategy needs a `fidelities` section")
        if not data.completed:
            raise ValueError("the multi-fidelity GP needs at least one completed trial")
        t0 = time.perf_counter()
        fit_notes: list[str] = []
        with torch.random.fork_rng(), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.manual_seed(data.seed)
            surrogate.set_threads(len(data.completed))
            model, fit_s = _fit(data, fid, fit_notes)
            t1 = time.perf_counter()
            shared = _candidates(data)  # scored at every level
            rows = shared + _local_candidates(data, fid, model)  # at the target only
            scored = _score(data, fid, model, rows)
            picks, why = _choose(data, fid, scored, rows, n, len(shared))
            opt_s = time.perf_counter() - t1
        notes = fit_notes + list(
            dict.fromkeys(f"{w.category.__name__}: {w.message}" for w in caught)
        )
        obj = data.spec.objectives[0]
        candidates = [
            Candidate(
                dict(rows[i]),
                {obj.name: (obj.sign * s["mean"], s["sd"])},
                s["acq"],
                fidelity=level,
            )
            for i, level, s in picks
        ]
        diagnostics: dict[str, Any] = {
            "acquisition": "augmented EI per unit cost (Huang et al. 2006)",
            "fidelity": why,
            "task_covariance": multitask.task_covariance(model),
            "n_train": len(data.completed),
            "n_train_per_level": {
                level: sum(1 for o in data.completed if data.fidelity_of(o.fidelity) == level)
                for level in fid.names
            },
            "n_pending": len(data.pending),
            "n_candidates": len(rows),
            "search": "pool rows" if data.space.pool else f"{len(rows)} Sobol points",
            "cost_left": data.cost_left,
            "fit_time_s": fit_s,
            "opt_time_s": opt_s,
            "time_total_s": time.perf_counter() - t0,
            "data_hash": _data_hash(data),
            "warnings": notes,
        }
        return Proposal(
            strategy=self.name,
            version=f"botorch-{botorch.__version__}",
            seed=data.seed,
            candidates=candidates,
            diagnostics=diagnostics,
        )


def _fit(data: CampaignData, fid: Fidelities, notes: list[str]) -> tuple[MultiTaskGP, float]:
    space = data.space
    sign = data.spec.objectives[0].sign
    name = data.spec.objectives[0].name
    x = surrogate.tensor(space.encode_many([o.parameters for o in data.completed]))
    order = tasks(fid)
    task = torch.tensor(
        [[float(order.index(data.fidelity_of(o.fidelity) or fid.target))] for o in data.completed],
        dtype=DTYPE,
    )
    y = torch.tensor([[sign * o.outcomes[name][0]] for o in data.completed], dtype=DTYPE)
    return multitask.fit(space, x, task, y, len(fid.levels), notes)


def tasks(fid: Fidelities) -> list[str]:
    """The levels in the model's task order: the target first, since BoTorch's task kernel
    fixes the first task's variance at 1 and learns the others relative to it (with the
    target elsewhere, one target point let its variance collapse to 0 and its EI with it)."""
    return [fid.target] + [name for name in fid.names if name != fid.target]


def _candidates(data: CampaignData) -> list[Mapping[str, Any]]:
    space = data.space
    if space.pool:
        return list(space.pool)
    engine = qmc.Sobol(d=max(space.sobol_dim(), 1), scramble=True, seed=data.seed)
    rows = [space.from_unit(u) for u in engine.random(SOBOL_CANDIDATES)]
    return [r for r in rows if not space.violated(r)]


def _local_candidates(
    data: CampaignData, fid: Fidelities, model: MultiTaskGP
) -> list[Mapping[str, Any]]:
    """Seeded perturbations of the target-level points the model rates best there.

    Without them the acquisition only ranks a fixed Sobol sample, whose spacing in 3-d
    (1,024 points: ~0.1 of each range) is coarser than the target's optimum needs: the
    target regret then stalls at the sample's resolution. Around each of the
    ``LOCAL_CENTRES`` best points ``LOCAL_PER_CENTRE`` Gaussian steps of a tenth, a
    thirtieth and a hundredth of each range (continuous spaces only; pools have their rows).
    They are offered at the target level only: refining the cheap level's optimum, which a
    biased level puts elsewhere, spent the budget there (AugmentedBranin, s = 0.5).
    """
    space = data.space
    if space.pool or not data.completed:
        return []
    order = tasks(fid)
    t = order.index(fid.target)
    at_target = [o for o in data.completed if data.fidelity_of(o.fidelity) == fid.target]
    if not at_target:
        return []
    seen = surrogate.tensor(space.encode_many([o.parameters for o in at_target]))
    with torch.no_grad():
        col = torch.full((len(seen), 1), float(t), dtype=DTYPE)
        mean = model.posterior(torch.cat([seen, col], 1)).mean.reshape(-1)
    best = torch.argsort(mean, descending=True)[:LOCAL_CENTRES].tolist()
    rng = np.random.default_rng([data.seed, len(data.completed), len(data.pending)])
    lo, hi = space.bounds
    free = np.array([i not in space.cat_dims for i in range(space.dim)])
    steps = np.array(LOCAL_STEPS)[np.arange(LOCAL_PER_CENTRE) % len(LOCAL_STEPS)]
    out: list[Mapping[str, Any]] = []
    for i in best:
        centre = seen[i].numpy()
        jump = rng.normal(size=(LOCAL_PER_CENTRE, space.dim)) * steps[:, None] * (hi - lo)
        xs = np.clip(centre + jump * free, lo, hi)
        for x in xs:
            row = space.decode(x)
            if not space.violated(row):
                out.append(row)
    return out


def _score(
    data: CampaignData, fid: Fidelities, model: MultiTaskGP, rows: Sequence[Mapping[str, Any]]
) -> dict[str, list[dict[str, float]]]:
    """Per level, per candidate: the target's EI, the correlation, the acquisition."""
    space = data.space
    order = tasks(fid)
    t = order.index(fid.target)
    x = surrogate.tensor(space.encode_many(list(rows)))
    noise = dict(zip(order, _noise(model, len(order)), strict=True))
    with torch.no_grad():
        seen_x = surrogate.tensor(space.encode_many([o.parameters for o in data.completed]))
        target_col = torch.full((len(seen_x), 1), float(t), dtype=DTYPE)
        incumbent = float(model.posterior(torch.cat([seen_x, target_col], 1)).mean.max())
        out: dict[str, list[dict[str, float]]] = {level: [] for level in fid.names}
        for j in range(0, len(x), CHUNK):
            xs = x[j : j + CHUNK]
            for level in fid.names:
                li = order.index(level)
                pair = torch.stack(
                    [
                        torch.cat([xs, torch.full((len(xs), 1), float(t), dtype=DTYPE)], 1),
                        torch.cat([xs, torch.full((len(xs), 1), float(li), dtype=DTYPE)], 1),
                    ],
                    dim=1,
                )  # b x 2 x (d+1): the target and level li at the same parameters
                post: Any = model.posterior(pair)
                cov = post.distribution.covariance_matrix  # b x 2 x 2, in the outcome's units
                mean = post.mean[:, 0, 0]
                var_t = cov[:, 0, 0].clamp_min(1e-12)
                sd = var_t.sqrt()
                z = (mean - incumbent) / sd
                normal = torch.distributions.Normal(0.0, 1.0)
                ei = sd * (z * normal.cdf(z) + normal.log_prob(z).exp())
                corr = (
                    cov[:, 0, 1] / (var_t * (cov[:, 1, 1] + noise[level]).clamp_min(1e-12)).sqrt()
                )
                corr = corr.clamp(0.0, 1.0)
                ratio = fid.cost(fid.target) / fid.cost(level)
                acq = ei * corr * ratio
                for k in range(len(xs)):
                    out[level].append(
                        {
                            "acq": float(acq[k]),
                            "ei": float(ei[k]),
                            "corr": float(corr[k]),
                            "mean": float(mean[k]),
                            "sd": float(sd[k]),
                        }
                    )
    return out


def _noise(model: MultiTaskGP, levels: int) -> list[float]:
    """Each level's noise variance in the outcome's units (0 where it cannot be read)."""
    raw = getattr(model.likelihood, "noise", None)
    if raw is None:
        return [0.0] * levels
    values = raw.detach().reshape(-1).tolist()
    tf = model.outcome_transform
    scale = float(tf.stdvs.reshape(-1)[0]) ** 2 if isinstance(tf, Standardize) else 1.0
    if len(values) == 1:
        values = values * levels
    return [float(v) * scale for v in values[:levels]] + [0.0] * max(0, levels - len(values))


def _choose(
    data: CampaignData,
    fid: Fidelities,
    scored: Mapping[str, list[dict[str, float]]],
    rows: Sequence[Mapping[str, Any]],
    n: int,
    shared: int,
) -> tuple[list[tuple[int, str, dict[str, float]]], dict[str, Any]]:
    """The best ``n`` (candidate, level) pairs with distinct parameters that the cost
    budget allows, skipping pairs already measured or under way; and why. Rows from
    ``shared`` on (the local steps) are offered at the target level only."""
    space = data.space
    taken: set[tuple[Any, str]] = set()
    for o in data.completed:
        taken.add((space.key(o.parameters), data.fidelity_of(o.fidelity) or fid.target))
    levels = data.pending_fidelity or (None,) * len(data.pending)
    for p, level in zip(data.pending, levels, strict=False):
        taken.add((space.key(p), data.fidelity_of(level) or fid.target))
    for p in data.rejected:
        for level in fid.names:
            taken.add((space.key(p), level))
    keys = [space.key(r) for r in rows]

    def offered(i: int, level: str) -> bool:  # not yet measured or under way at that level
        return (keys[i], level) not in taken and (i < shared or level == fid.target)

    ranked = sorted(
        (
            (-s["acq"], fid.names.index(level), i, level)
            for level, per in scored.items()
            for i, s in enumerate(per)
            if offered(i, level)
        ),
    )
    left = math.inf if data.cost_left is None else data.cost_left
    picks: list[tuple[int, str, dict[str, float]]] = []
    used: set[Any] = set()
    for _, _, i, level in ranked:
        if len(picks) >= n:
            break
        cost = fid.cost(level)
        if keys[i] in used or cost > left * (1 + 1e-9):
            continue
        picks.append((i, level, scored[level][i]))
        used.add(keys[i])
        left -= cost
    per_level: dict[str, Any] = {}
    for level, per in scored.items():
        free = [i for i in range(len(per)) if offered(i, level)]
        if not free:
            per_level[level] = None
            continue
        best = max(free, key=lambda i: per[i]["acq"])
        per_level[level] = {
            "acquisition": per[best]["acq"],
            "target_ei": per[best]["ei"],
            "correlation": per[best]["corr"],
            "cost_ratio": fid.cost(fid.target) / fid.cost(level),
            "cost": fid.cost(level),
        }
    why: dict[str, Any] = {"per_level": per_level}
    if picks:
        first = picks[0][1]
        why["chosen"] = [level for _, level, _ in picks]
        b = per_level[first]
        why["why"] = (
            f"{first}: target EI {b['target_ei']:.3g} x correlation {b['correlation']:.2f} "
            f"x cost ratio {b['cost_ratio']:.3g} = {b['acquisition']:.3g}, the most per unit cost"
        )
    else:
        why["chosen"] = []
        why["why"] = "no candidate at any level fits what is left of the cost budget"
    return picks, why


def _data_hash(data: CampaignData) -> str:
    rows = sorted(
        (o.trial_id, o.fidelity or "", sorted(o.outcomes.items())) for o in data.completed
    )
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()
