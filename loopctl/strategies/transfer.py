"""Starting from past data: the campaign's `prior` sources as tasks related to this one.

One multi-task GP (:mod:`.multitask`) over the campaign's own trials (the target task)
and each prior source (a task each): it learns from the data how strongly each source
agrees with this campaign, through the correlation between tasks (and a noise per task:
a source whose values look like noise gets little say whatever its correlation reads),
and uses a source that agrees where this campaign has not yet measured. One correlation
per source: a source that agrees on some inputs and not on others (Suzuki III->IV in
bench/RESULTS-transfer.md) can mislead the first proposals, so each proposal first asks the
campaign's own trials whether the prior predicts them better than the plain GP does
(:mod:`.prior_gate`); if not, the plain GP's proposal is made, and the decision recorded.

Each task's values are standardised on their own first, so a source whose values are
shifted or scaled against this campaign's (another substrate, another instrument) can
still be highly correlated with it.

The acquisition is log-noisy expected improvement of the target task, over the same
search as the campaign's single-task GP (:mod:`.search`: pools, choices, constraints,
pending points, failures). Every proposal records the sources, the rows of each the model
saw, and the learned correlation of each with this campaign.
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import botorch
import numpy as np
import torch

from loopctl.spec_types import PriorSource
from loopctl.strategies import multitask, prior_gate, surrogate
from loopctl.strategies.base import CampaignData, Candidate, Proposal
from loopctl.strategies.botorch_gp import BotorchStrategy, make_acquisition, warning_texts
from loopctl.strategies.feasibility import failure_aware
from loopctl.strategies.search import Search

DTYPE = torch.float64
# prior rows the model sees, over all sources: an exact multi-task GP costs O(n^3) per
# optimiser step; beyond, each source keeps its best quarter and a seeded spread
MAX_PRIOR_ROWS = 400


class TransferStrategy:
    """A multi-task GP over this campaign and its prior sources; log-noisy EI on this one."""

    name = "transfer"

    def propose(self, data: CampaignData, n: int) -> Proposal:
        if not data.completed:
            raise ValueError("the transfer GP needs at least one completed trial; use Sobol")
        sources = data.spec.prior
        if not sources:
            raise ValueError("the transfer strategy needs a `prior` section")
        t0 = time.perf_counter()
        notes: list[str] = []
        diagnostics: dict[str, Any] = {}
        picks: list[Any] = []
        with torch.random.fork_rng(), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.manual_seed(data.seed)
            prior_rows = [
                _subset(s.rows, data.spec.objectives[0].name, data.seed, k, len(sources))
                for k, s in enumerate(sources)
            ]
            surrogate.set_threads(len(data.completed) + sum(len(r) for r in prior_rows))
            train = _training(data, prior_rows)
            model, fit_s = multitask.fit(
                data.space,
                train.x,
                train.task,
                train.y,
                len(sources) + 1,
                notes,
                output_tasks=[0],
                categorical=True,
            )
            gate = None
            if data.spec.strategy.options.get("prior_gate", True):
                gate = prior_gate.decide(data, model, train.target, train.scale, notes)
            t1 = time.perf_counter()
            if gate is None or gate.use_prior:
                if data.spec.strategy.options.get("acquisition", "ei") != "ei":
                    notes.append("with a prior the acquisition is log-noisy EI")
                tr = surrogate.Training(
                    train.x[train.target], train.y[train.target], None, train.names, 1
                )
                acq, acq_name = make_acquisition(data, model, tr, False, notes)
                acq = failure_aware(data, acq, True, diagnostics)
                search = Search(data, acq, notes)
                picks = search.run(n)
                preds = _predict(data, model, train, [p.values for p in picks])
            opt_s = time.perf_counter() - t1
        notes += warning_texts(caught)
        cov = multitask.task_covariance(model)
        corr = multitask.correlations(cov) or []
        prior = {
            "sources": [
                _describe(s, len(rows), corr[k + 1] if len(corr) > k + 1 else None)
                for k, (s, rows) in enumerate(zip(sources, prior_rows, strict=True))
            ],
            "task_covariance": cov,
            "gate": gate.diagnostics()
            if gate is not None
            else {"use_prior": True, "reason": "prior_gate: false, the prior is always used"},
            "why": "a multi-task GP: this campaign is task 0, each prior source a task "
            "of its own; correlation is each source's learned agreement with this campaign",
        }
        common = {
            "n_prior": int((~train.target).sum()),
            "data_hash": data_hash(data),
        }
        if gate is not None and not gate.use_prior:
            # what the campaign would propose without a prior, exactly (its own seed and rules)
            cold = BotorchStrategy().propose(data, n)
            cold_notes = list(cold.diagnostics.get("warnings", []))
            return Proposal(
                strategy=self.name,
                version=cold.version,
                seed=data.seed,
                candidates=cold.candidates,
                diagnostics=cold.diagnostics
                | common
                | {
                    "prior": prior,
                    "fit_time_s": fit_s + float(cold.diagnostics.get("fit_time_s", 0.0)),
                    "time_total_s": time.perf_counter() - t0,
                    "warnings": notes + [w for w in cold_notes if w not in notes],
                },
            )
        diagnostics |= {
            "prior": prior,
            "lengthscales": _lengthscales(model),
            "acquisition": acq_name,
            "acq_values": [p.acq for p in picks],
            "n_train": len(data.completed),
            **common,
            "n_failed": len(data.failed),
            "n_pending": len(data.pending),
            "num_restarts": search.restarts,
            "raw_samples": search.raw_samples,
            "search": search.method,
            "fit_time_s": fit_s,
            "opt_time_s": opt_s,
            "time_total_s": time.perf_counter() - t0,
            "warnings": notes,
        }
        candidates = [
            Candidate(dict(p.values), pred, p.acq) for p, pred in zip(picks, preds, strict=True)
        ]
        return Proposal(
            strategy=self.name,
            version=f"botorch-{botorch.__version__}",
            seed=data.seed,
            candidates=candidates,
            diagnostics=diagnostics,
        )


class _Train:
    """The model's rows: this campaign's (task 0) first, then each source's."""

    def __init__(
        self,
        x: torch.Tensor,
        task: torch.Tensor,
        y: torch.Tensor,
        target: torch.Tensor,
        scale: tuple[float, float],
        names: tuple[str, ...],
    ) -> None:
        self.x, self.task, self.y, self.target = x, task, y, target
        self.scale = scale  # (mean, sd) of this campaign's signed objective
        self.names = names


def _standardise(v: np.ndarray) -> tuple[np.ndarray, float, float]:
    """(v - mean) / sd per task; a task of one value (or all equal) keeps its spread of 1."""
    mean = float(v.mean())
    sd = float(v.std(ddof=1)) if len(v) > 1 else 0.0
    sd = sd if sd > 0 else 1.0
    return (v - mean) / sd, mean, sd


def _training(data: CampaignData, prior_rows: Sequence[Sequence[Mapping[str, Any]]]) -> _Train:
    obj = data.spec.objectives[0]
    space = data.space
    xs, tasks, ys = [], [], []
    own = np.array([obj.sign * o.outcomes[obj.name][0] for o in data.completed], dtype=float)
    z, mean, sd = _standardise(own)
    xs.append(space.encode_many([o.parameters for o in data.completed]))
    tasks.append(np.zeros(len(own)))
    ys.append(z)
    for k, rows in enumerate(prior_rows, start=1):
        values = np.array([obj.sign * float(r[obj.name]) for r in rows], dtype=float)
        xs.append(space.encode_many([{p.name: r[p.name] for p in space.params} for r in rows]))
        tasks.append(np.full(len(rows), float(k)))
        ys.append(_standardise(values)[0])
    task = np.concatenate(tasks)
    return _Train(
        surrogate.tensor(np.concatenate(xs)),
        surrogate.tensor(task).reshape(-1, 1),
        surrogate.tensor(np.concatenate(ys)).reshape(-1, 1),
        torch.as_tensor(task == 0),
        (mean, sd),
        (obj.name,),
    )


def _subset(
    rows: Sequence[Mapping[str, Any]], objective: str, seed: int, k: int, sources: int
) -> Sequence[Mapping[str, Any]]:
    """A source's rows, or its best quarter and a seeded spread when all would be too many."""
    size = MAX_PRIOR_ROWS // sources
    if len(rows) <= size:
        return rows
    # both tails (an eighth each): whichever way the objective goes, its optimum is kept
    order = sorted(range(len(rows)), key=lambda i: float(rows[i][objective]))
    best = order[: size // 8] + order[-(size // 8) :]
    rest = [i for i in range(len(rows)) if i not in set(best)]
    rng = np.random.default_rng(seed * 31 + k)
    pick = rng.choice(len(rest), size=size - len(best), replace=False)
    return [rows[i] for i in sorted(best + [rest[j] for j in pick])]


def _predict(
    data: CampaignData, model: Any, train: _Train, chosen: list[dict[str, Any]]
) -> list[dict[str, tuple[float, float]]]:
    """The target task's posterior mean and sd, in the objective's own units."""
    if not chosen:
        return []
    obj = data.spec.objectives[0]
    mean0, sd0 = train.scale
    with torch.no_grad():
        post = model.posterior(surrogate.tensor(data.space.encode_many(chosen)))
        mean = post.mean.reshape(-1) * sd0 + mean0
        sd = post.variance.clamp_min(0.0).sqrt().reshape(-1) * sd0
    return [{obj.name: (obj.sign * float(m), float(s))} for m, s in zip(mean, sd, strict=True)]


def _lengthscales(model: Any) -> list[float]:
    out: list[float] = []
    for _, module in model.named_modules():
        if getattr(module, "raw_lengthscale", None) is not None:
            out.extend(float(v) for v in module.lengthscale.detach().reshape(-1).tolist())
    return out


def _describe(source: PriorSource, used: int, correlation: float | None) -> dict[str, Any]:
    out: dict[str, Any] = {"file": source.file, "sha256": source.sha256}
    if source.campaign:
        out["campaign"] = source.campaign
    out |= {"rows": len(source.rows), "rows_used": used, "correlation": correlation}
    return out


def data_hash(data: CampaignData) -> str:
    """The campaign's own data (as every GP strategy hashes it) and its prior sources."""
    prior = [s.sha256 or _rows_hash(s.rows) for s in data.spec.prior]
    return hashlib.sha256(json.dumps([surrogate.data_hash(data), prior]).encode()).hexdigest()


def _rows_hash(rows: Sequence[Mapping[str, Any]]) -> str:
    return hashlib.sha256(json.dumps([sorted(r.items()) for r in rows]).encode()).hexdigest()
