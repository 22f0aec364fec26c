"""The summary `loopctl validate` prints: what a campaign file asks for, in the words of a
person checking it (ranges, objectives, budget, and which strategy runs when)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from loopctl.spec import PriorSource, Spec


def summarise_spec(spec: Spec) -> str:
    from loopctl.strategies import initial_design_size, model_plan

    lines = [f"campaign {spec.name!r} (seed {spec.seed}) is valid", "space:"]
    for p in spec.space:
        if p.type == "range":
            detail = f"[{p.low:g}, {p.high:g}]" + (" log" if p.log else "")
        elif p.type == "integer":
            detail = f"integers in [{p.low}, {p.high}]"
        elif p.type == "choice":
            detail = "one of " + ", ".join(map(str, p.values))
        elif p.type == "fixed":
            detail = f"fixed at {p.value!r}"
        elif p.type == "formula":
            detail = "a chemical formula, chosen from the pool"
        elif p.type == "structure":
            detail = "a structure file (CIF, POSCAR), chosen from the pool"
        else:
            detail = "fractions of " + ", ".join(
                f"{e}[{lo:g}-{hi:g}]" for e, (lo, hi) in zip(p.elements, p.bounds, strict=True)
            )
        lines.append(f"  {p.name}: {p.type} {detail}")
    lines.append("objectives: " + ", ".join(f"{o.goal} {o.name}" for o in spec.objectives))
    lines.append(
        f"budget: {spec.budget.trials} trials"
        + (f", {spec.budget.wall_time:g} s" if spec.budget.wall_time else "")
        + (f", cost {spec.budget.cost:g}" if spec.budget.cost is not None else "")
    )
    if spec.fidelities is not None:
        levels = ", ".join(f"{lv.name} (cost {lv.cost:g})" for lv in spec.fidelities.levels)
        lines.append(f"fidelities: {levels}; the objective is judged at {spec.fidelities.target}")
    for source in spec.prior:
        lines.append(f"prior: {prior_line(source)}")
    method = spec.strategy.method
    if method == "sobol":
        lines.append("strategy: sobol (scrambled, seeded; random rows of a pool)")
    elif method == "ax":
        lines.append("strategy: ax (Ax's Client and its default generation strategy)")
    else:
        _, then = model_plan(spec)
        lines.append(
            f"strategy: {method} ({initial_design_size(spec)} initial trials, then {then})"
        )
    exe = spec.execution
    ahead = f" (+{exe.ahead} ready ahead)" if exe.ahead and exe.approval == "auto" else ""
    lines.append(f"execution: up to {exe.max_in_flight} in flight{ahead}, {exe.retries} retries")
    if spec.oracle:
        alloy = "CHGNet energies" if spec.oracle.kind == "chgnet" else "EMT alloy energies"
        what = spec.oracle.function or spec.oracle.table or alloy
        lines.append(f"oracle: {spec.oracle.kind} ({what}); spawn {spec.drivers.spawn} drivers")
    return "\n".join(lines)


def prior_line(source: PriorSource) -> str:
    """``file: N rows (sha256 ..., campaign ...; K dropped: reasons)``, for validate and audit."""
    facts = [f"{len(source.rows)} rows"]
    if source.sha256:
        facts.append(f"sha256 {source.sha256[:16]}")
    if source.campaign:
        facts.append(f"campaign {source.campaign}")
    if source.dropped:
        facts.append(
            f"{sum(source.dropped.values())} dropped: "
            + ", ".join(f"{n} {why}" for why, n in source.dropped.items())
        )
    return f"{source.label} ({'; '.join(facts)})"
