"""Ax's own Client and default generation strategy, as one more strategy.

So a user can compare with Ax, or fall back to it, without leaving loopctl.
The Client is rebuilt from the campaign's data at every proposal (completed
trials attached with their results, trials in flight and rejected candidates
attached as running, failures as failed), so nothing lives outside the
database and a resumed campaign continues exactly. Ax's initial design is
kept (the centre, then Sobol, five trials in all); as a rebuilt Client
forgets how much of it was used, the remaining budget is passed in and the
Sobol seed varies with the proposal so that points do not repeat.

Ax has no simplex: a composition of k elements becomes k-1 fractions with a
sum constraint, the last fraction is what remains, and the space repairs
the rounding. Names are mapped to ``p0, p1, ...`` and ``m0, m1, ...``
because Ax parses constraint expressions from text.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Mapping
from typing import Any

from loopctl.spec import (
    ChoiceParam,
    CompositionParam,
    FixedParam,
    IntegerParam,
    RangeParam,
    Spec,
)
from loopctl.strategies import fused_kernel
from loopctl.strategies.base import CampaignData, Candidate, Proposal

AX_INITIAL_TRIALS = 5  # Ax's default initialization budget


class AxStrategy:
    name = "ax"

    def prepare(self) -> None:
        import ax  # noqa: F401  (about 3 s: torch, BoTorch and Ax itself)

    def model_free(self, completed: int, pending: int) -> bool:
        return False

    def propose(self, data: CampaignData, n: int) -> Proposal:
        import ax
        from ax import Client

        from loopctl.strategies.surrogate import set_threads

        fused_kernel.no_jit()
        set_threads(len(data.completed))  # Ax's GPs are as small as ours
        if data.space.pool:
            raise ValueError("Ax's Client cannot choose from a pool; use method auto")
        t0 = time.perf_counter()
        names = _AxNames(data.spec)
        notes: list[str] = []
        quiet = {  # Ax logs every trial at INFO; the proposal's diagnostics say it once
            name: logging.getLogger(name)
            for name in list(logging.root.manager.loggerDict)
            if name == "ax" or name.startswith("ax.")
        }
        levels = {name: lg.level for name, lg in quiet.items()}
        for lg in quiet.values():
            lg.setLevel(logging.WARNING)
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                client = Client(random_seed=data.seed)
                client.configure_experiment(
                    parameters=names.parameters(), parameter_constraints=names.constraints()
                )
                client.configure_optimization(
                    objective=names.objective(), outcome_constraints=names.outcome_constraints()
                )
                seen = len(data.completed) + len(data.pending) + len(data.failed)
                seen += len(data.rejected)
                client.configure_generation_strategy(
                    initialization_budget=max(0, AX_INITIAL_TRIALS - seen),
                    initialization_random_seed=data.seed,
                    initialize_with_center=seen == 0,
                )
                for o in data.completed:
                    idx = client.attach_trial(parameters=names.to_ax(o.parameters))
                    client.complete_trial(idx, raw_data=names.outcomes(o.outcomes))
                for p in data.pending + data.rejected:
                    client.attach_trial(parameters=names.to_ax(p))
                for p in data.failed:
                    client.mark_trial_failed(client.attach_trial(parameters=names.to_ax(p)))
                t1 = time.perf_counter()
                trials = client.get_next_trials(max_trials=n)
                gen_s = time.perf_counter() - t1
                exp: Any = client._experiment  # the generator of each trial, for the audit
                nodes = [exp.trials[i].generator_runs[0]._generation_node_name for i in trials]
        finally:
            for name, lg in quiet.items():
                lg.setLevel(levels[name])
        notes += sorted({f"{w.category.__name__}: {w.message}"[:300] for w in caught})
        known = {data.space.key(o.parameters) for o in data.completed}
        known |= {data.space.key(p) for p in data.pending + data.rejected + data.failed}
        candidates = []
        for params in trials.values():
            values = data.space.validate(names.from_ax(params), "Ax candidate")
            if data.space.key(values) in known:
                notes.append("Ax proposed a known point; dropped")
                continue
            known.add(data.space.key(values))
            candidates.append(Candidate(values))
        return Proposal(
            strategy=self.name,
            version=f"ax-{ax.__version__}",
            seed=data.seed,
            candidates=candidates,
            diagnostics={
                "generation_nodes": nodes,
                "n_train": len(data.completed),
                "n_pending": len(data.pending),
                "n_failed": len(data.failed),
                "gen_time_s": gen_s,
                "time_total_s": time.perf_counter() - t0,
                "warnings": notes,
            },
        )


class _AxNames:
    """The translation between a campaign's parameters/outcomes and Ax's."""

    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self.param: dict[str, str] = {}  # loopctl parameter or composition.El -> Ax name
        for p in spec.space:
            if isinstance(p, CompositionParam):
                for el in p.elements[:-1]:
                    self.param[f"{p.name}.{el}"] = f"p{len(self.param)}"
            elif not isinstance(p, FixedParam):
                self.param[p.name] = f"p{len(self.param)}"
        self.metric = {name: f"m{i}" for i, name in enumerate(spec.metric_names)}

    def parameters(self) -> list[Any]:
        from ax import ChoiceParameterConfig, RangeParameterConfig

        out: list[Any] = []
        for p in self.spec.space:
            if isinstance(p, RangeParam):
                out.append(
                    RangeParameterConfig(
                        name=self.param[p.name],
                        bounds=(p.low, p.high),
                        parameter_type="float",
                        scaling="log" if p.log else "linear",
                    )
                )
            elif isinstance(p, IntegerParam):
                out.append(
                    RangeParameterConfig(
                        name=self.param[p.name], bounds=(p.low, p.high), parameter_type="int"
                    )
                )
            elif isinstance(p, ChoiceParam):
                numeric = all(isinstance(v, (int, float)) for v in p.values)
                kind = (
                    "str"
                    if not numeric
                    else "int"
                    if all(isinstance(v, int) for v in p.values)
                    else "float"
                )
                out.append(
                    ChoiceParameterConfig(
                        name=self.param[p.name],
                        values=list(p.values),  # type: ignore[arg-type]
                        parameter_type=kind,  # type: ignore[arg-type]
                        is_ordered=numeric or len(p.values) == 2,
                    )
                )
            elif isinstance(p, CompositionParam):
                for el, (lo, hi) in zip(p.elements[:-1], p.bounds[:-1], strict=True):
                    out.append(
                        RangeParameterConfig(
                            name=self.param[f"{p.name}.{el}"],
                            bounds=(lo, hi),
                            parameter_type="float",
                        )
                    )
            elif not isinstance(p, FixedParam):
                raise ValueError(f"Ax cannot take a {p.type} parameter ({p.name})")
        return out

    def constraints(self) -> list[str]:
        out = []
        for p in self.spec.space:
            if isinstance(p, CompositionParam):
                free = " + ".join(self.param[f"{p.name}.{el}"] for el in p.elements[:-1])
                lo, hi = p.bounds[-1]
                out.append(f"{free} <= {1.0 - lo!r}")
                if hi < 1.0:
                    out.append(f"{free} >= {1.0 - hi!r}")
        for c in self.spec.parameter_constraints:
            coef: dict[str, float] = {}
            bound = c.bound
            for name, a in c.terms:
                if name in self.param:
                    coef[self.param[name]] = coef.get(self.param[name], 0.0) + a
                    continue
                base = name.rpartition(".")[0]  # the last element: 1 - the others
                bound -= a
                comp = self.spec.parameter(base)
                assert isinstance(comp, CompositionParam)
                for el in comp.elements[:-1]:
                    ax_name = self.param[f"{base}.{el}"]
                    coef[ax_name] = coef.get(ax_name, 0.0) - a
            lhs = " + ".join(f"{a!r} * {n}" for n, a in coef.items() if a != 0.0)
            out.append(f"{lhs} {c.op} {bound!r}")
        return out

    def objective(self) -> str:
        return ", ".join(
            ("" if o.goal == "maximize" else "-") + self.metric[o.name]
            for o in self.spec.objectives
        )

    def outcome_constraints(self) -> list[str]:
        out = [f"{self.metric[c.name]} {c.op} {c.bound!r}" for c in self.spec.outcome_constraints]
        if len(self.spec.objectives) > 1:  # thresholds are outcome constraints on objectives
            for o in self.spec.objectives:
                if o.threshold is not None:
                    op = ">=" if o.goal == "maximize" else "<="
                    out.append(f"{self.metric[o.name]} {op} {o.threshold!r}")
        return out

    def to_ax(self, values: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for p in self.spec.space:
            if isinstance(p, CompositionParam):
                for el in p.elements[:-1]:
                    out[self.param[f"{p.name}.{el}"]] = float(values[p.name][el])
            elif not isinstance(p, FixedParam):
                out[self.param[p.name]] = values[p.name]
        return out

    def from_ax(self, params: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for p in self.spec.space:
            if isinstance(p, CompositionParam):
                fr = {el: float(params[self.param[f"{p.name}.{el}"]]) for el in p.elements[:-1]}
                fr[p.elements[-1]] = max(0.0, 1.0 - sum(fr.values()))
                total = sum(fr.values())
                out[p.name] = {el: v / total for el, v in fr.items()}
            elif isinstance(p, FixedParam):
                out[p.name] = p.value
            else:
                out[p.name] = params[self.param[p.name]]
        return out

    def outcomes(
        self, outcomes: Mapping[str, tuple[float, float | None]]
    ) -> dict[str, float | tuple[float, float]]:
        """A mean alone when no sem was reported: Ax then infers the noise."""
        return {
            self.metric[k]: float(m) if s is None else (float(m), float(s))
            for k, (m, s) in outcomes.items()
            if k in self.metric
        }
