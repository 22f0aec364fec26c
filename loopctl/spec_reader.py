"""Campaign file (YAML) -> validated, immutable objects (loopctl.spec_types).

All problems in a file are collected before raising, each prefixed with the path of the
field (``space[2].bounds``), because a scientist fixing a file should not have to rerun
validation once per typo. Which keys each mapping may have, and how each plain field is
checked, comes from the table in loopctl.schema; the checks across fields are here.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from loopctl.canonical import canonical
from loopctl.errors import SpecError
from loopctl.expressions import parse_linear, parse_outcome, term_problem
from loopctl.field_reader import Reader, kind_of, pair
from loopctl.pool_file import read_pool
from loopctl.prior_file import read_prior, stored
from loopctl.schema import ELEMENT_SYMBOLS, EMT_ELEMENTS, SECTIONS, field_of, keys
from loopctl.spec_types import (
    Budget,
    ChoiceParam,
    CompositionParam,
    DriversSpec,
    Execution,
    Fidelities,
    FidelityLevel,
    FixedParam,
    FormulaParam,
    IntegerParam,
    LinearConstraint,
    Objective,
    OracleSpec,
    OutcomeConstraint,
    Parameter,
    PoolSpec,
    PriorSource,
    RangeParam,
    SecuritySpec,
    Spec,
    StrategySpec,
    StructureParam,
)


def load_spec(path: str | Path) -> Spec:
    """Read and validate a campaign file."""
    from loopctl.campaign_yaml import MAX_FILE_BYTES, TOO_BIG  # see parse_spec_text

    p = Path(path)
    try:
        if p.stat().st_size > MAX_FILE_BYTES:
            raise SpecError(
                [TOO_BIG.format(size=p.stat().st_size, limit=MAX_FILE_BYTES)], source=str(p)
            )
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError([f"file not found: {p}"], source=str(p)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError([f"cannot read file: {exc}"], source=str(p)) from None
    return parse_spec_text(text, source=str(p))


def parse_spec_text(text: str, source: str = "campaign") -> Spec:
    # PyYAML only where a file is read: status and export work from the stored spec
    from loopctl.campaign_yaml import read_yaml

    return parse_spec(read_yaml(text, source), source=source)


def parse_spec(data: Any, source: str = "campaign", *, read_files: bool = True) -> Spec:
    """Validate a decoded campaign mapping. Raises SpecError listing every problem.
    ``read_files=False``: for the stored form, whose pool rows were checked against their
    structure files when the campaign started (an audit must not need the files)."""
    r = Reader()
    if not isinstance(data, Mapping):
        raise SpecError(
            ["the file must be a mapping of fields (name, space, objectives, ...)"], source=source
        )
    r.unknown_keys(data, "", keys("top"))
    name = _read(r, data, "", "top", "name") or "unnamed"
    description = _read(r, data, "", "top", "description") or ""
    seed = _read(r, data, "", "top", "seed")
    space = _space(r, data.get("space"))
    objectives = _objectives(r, data.get("objectives"))
    names = [p.name for p in space] + [o.name for o in objectives]
    for dup in sorted({n for n in names if names.count(n) > 1}):
        r.problem("objectives", f"name {dup!r} is used more than once across space and objectives")
    budget = _budget(r, data.get("budget"))
    execution = _execution(r, data.get("execution", {}))
    strategy = _strategy(r, data.get("strategy", {}))
    oracle = _oracle(r, data.get("oracle"), space, objectives)
    drivers = _drivers(r, data.get("drivers", {}))
    security = _security(r, data.get("security", {}))
    robot = r.mapping(data.get("robot"), "robot") or {}
    constraints = _linear_constraints(r, data.get("constraints"), space)
    outcome_constraints = _outcome_constraints(r, data.get("outcome_constraints"), objectives)
    pool = read_pool(r, data.get("pool"), space, source, read_files=read_files)
    fidelities = _fidelities(r, data.get("fidelities"))
    _fidelity_checks(r, fidelities, budget, strategy, objectives)
    prior = read_prior(r, data.get("prior"), space, objectives, source)
    _prior_checks(r, data.get("prior"), fidelities, strategy, outcome_constraints)
    extra = [c.name for c in outcome_constraints if c.name not in {o.name for o in objectives}]
    if oracle is not None and extra:
        r.problem(
            "outcome_constraints",
            f"the built-in oracle computes only the objectives, not {extra[0]!r}; "
            "use a driver that measures it",
        )
    if any(isinstance(p, FormulaParam) for p in space) and pool is None:
        r.problem("space", "a formula parameter needs a `pool` of candidates to choose from")
    _structure_rules(r, space, pool)
    if pool is not None and constraints:
        r.problem("constraints", "a pool campaign takes its candidates as they are; drop these")
    if strategy.method == "botorch" and len(objectives) > 1:
        r.problem(
            "strategy.method",
            f"botorch handles one objective; this campaign has "
            f"{len(objectives)} (use auto, mobo, nsga2, ax or sobol)",
        )
    if strategy.method in ("mobo", "nsga2") and len(objectives) < 2:
        r.problem(
            "strategy.method",
            f"{strategy.method} needs two or more objectives (use auto or botorch for one)",
        )
    if strategy.method == "ax" and pool is not None:
        r.problem("strategy.method", "Ax's Client cannot search a pool; use auto")
    if drivers.spawn and oracle is None:
        r.problem("drivers.spawn", "spawning oracle drivers needs an `oracle` section")
    raw = _stored_form(r, data, pool, prior) if not r.problems else {}
    if r.problems:
        raise SpecError(r.problems, source=source)
    return Spec(
        name=name,
        seed=seed,
        space=tuple(space),
        objectives=tuple(objectives),
        budget=budget,
        execution=execution,
        strategy=strategy,
        oracle=oracle,
        drivers=drivers,
        security=security,
        parameter_constraints=tuple(constraints),
        outcome_constraints=tuple(outcome_constraints),
        pool=pool,
        fidelities=fidelities,
        prior=prior,
        robot=dict(robot),
        description=description,
        raw=raw,
        source=source,
    )


def _structure_rules(r: Reader, space: list[Parameter], pool: PoolSpec | None) -> None:
    """A structure file stands beside the formula models see it through (the reader fills
    the formula in from the file): one of each, from a pool."""
    structures = [p for p in space if isinstance(p, StructureParam)]
    if not structures:
        return
    formulas = [p for p in space if isinstance(p, FormulaParam)]
    if len(structures) > 1 or len(formulas) != 1:
        r.problem(
            "space",
            "a structure parameter needs exactly one formula parameter beside it (the "
            "composition models see) and no second structure parameter",
        )
    if pool is None:
        r.problem("space", "a structure parameter needs a `pool` of candidates to choose from")


def _read(
    r: Reader, d: Mapping[str, Any], path: str, section: str, key: str, fallback: Any = None
) -> Any:
    """A plain field of ``section``, checked as loopctl.schema's table says."""
    return r.field(d, path, field_of(section, key), fallback)


def _stored_form(
    r: Reader, data: Mapping[str, Any], pool: PoolSpec | None, prior: tuple[PriorSource, ...]
) -> dict[str, Any]:
    """The campaign as the database keeps it and hashes it: plain JSON, as written.

    Parsing this form again gives the same form (validated values validate to
    themselves), so a resumed campaign sees exactly the candidates it started with.
    """
    where = _unstorable(data, "")
    if where:
        r.problem(where[0], where[1])
        return {}
    try:
        raw: dict[str, Any] = json.loads(canonical(data))
    except (TypeError, ValueError) as exc:
        r.problem("campaign", f"cannot be stored in the campaign database ({exc})")
        return {}
    if pool is not None:
        # the database keeps the candidates themselves: a resume or an audit must not
        # depend on a CSV that may have moved or changed since the campaign started
        raw["pool"] = {"file": pool.file, "rows": json.loads(canonical(pool.rows))}
    if prior:
        # so are a prior's measurements, with the file's hash and campaign id beside them
        # (loopctl.prior_file says why)
        raw["prior"] = json.loads(canonical(stored(prior)))
    return raw


def _unstorable(v: Any, where: str) -> tuple[str, str] | None:
    """(field, problem) for the first value JSON cannot hold: NaN and infinity get past
    fields that take any value (choice values, robot settings) but never into a database."""
    if isinstance(v, float) and not math.isfinite(v):
        return where or "campaign", f"{v} cannot be stored; write a finite number"
    if isinstance(v, Mapping):
        for key, x in v.items():
            bad = _unstorable(x, f"{where}.{key}" if where else str(key))
            if bad:
                return bad
    elif isinstance(v, list):
        for i, x in enumerate(v):
            bad = _unstorable(x, f"{where}[{i}]")
            if bad:
                return bad
    elif v is not None and not isinstance(v, (str, int, float)):
        return where or "campaign", f"{kind_of(v)} cannot be stored; quote it to make it text"
    return None


def _space(r: Reader, value: Any) -> list[Parameter]:
    if value is None:
        r.problem("space", "is required: a list of parameters")
        return []
    if not isinstance(value, list) or not value:
        r.problem("space", f"must be a non-empty list of parameters, got {kind_of(value)}")
        return []
    params: list[Parameter] = []
    for i, item in enumerate(value):
        where = f"space[{i}]"
        d = r.mapping(item, where)
        if d is None:
            continue
        name = _read(r, d, where, "space", "name")
        ptype = _read(r, d, where, "space", "type")
        if name is None or ptype is None:
            continue
        p = _parameter(r, d, where, name, ptype)
        if p is not None:
            params.append(p)
    # only when every parameter was read: one with a mistake is not "fixed" but missing
    if len(params) == len(value) and all(isinstance(p, FixedParam) for p in params):
        r.problem("space", "every parameter is fixed; there is nothing to optimise")
    return params


def _parameter(
    r: Reader, d: Mapping[str, Any], where: str, name: str, ptype: str
) -> Parameter | None:
    r.unknown_keys(d, where, keys("space", ptype))
    if ptype == "range":
        log = _read(r, d, where, "space", "log")
        unit = _read(r, d, where, "space", "unit")
        b = pair(r, d.get("bounds"), f"{where}.bounds")
        if b is None:
            return None
        if b[0] == b[1]:
            r.problem(f"{where}.bounds", "lower and upper bound are equal; use type: fixed")
            return None
        if log and b[0] <= 0:
            r.problem(f"{where}.bounds", f"log scale needs a lower bound above 0, got {b[0]:g}")
            return None
        return RangeParam(name, b[0], b[1], log=log, unit=unit)
    if ptype == "integer":
        unit = _read(r, d, where, "space", "unit")
        b = pair(r, d.get("bounds"), f"{where}.bounds")
        if b is None:
            return None
        if b[0] != int(b[0]) or b[1] != int(b[1]):
            r.problem(f"{where}.bounds", "integer bounds must be whole numbers")
            return None
        if b[0] == b[1]:
            r.problem(f"{where}.bounds", "lower and upper bound are equal; use type: fixed")
            return None
        return IntegerParam(name, int(b[0]), int(b[1]), unit=unit)
    if ptype == "choice":
        values = d.get("values")
        if not isinstance(values, list) or len(values) < 2:
            r.problem(
                f"{where}.values", f"must be a list of at least two values, got {kind_of(values)}"
            )
            return None
        bad = [v for v in values if isinstance(v, bool) or not isinstance(v, (str, int, float))]
        if bad:
            r.problem(f"{where}.values", f"values must be text or numbers, got {kind_of(bad[0])}")
            return None
        if len(set(values)) != len(values):
            r.problem(f"{where}.values", "values must be distinct")
            return None
        return ChoiceParam(name, tuple(values))
    if ptype == "fixed":
        v = d.get("value")
        if isinstance(v, bool) or not isinstance(v, (str, int, float)):
            r.problem(f"{where}.value", f"must be text or a number, got {kind_of(v)}")
            return None
        return FixedParam(name, v)
    if ptype == "formula":
        return FormulaParam(name)
    if ptype == "structure":
        return StructureParam(name)
    return _composition(r, d, where, name)


def _composition(r: Reader, d: Mapping[str, Any], where: str, name: str) -> CompositionParam | None:
    elements = d.get("elements")
    if isinstance(elements, list) and len(elements) == 1:
        r.problem(
            f"{where}.elements",
            f"composition {name!r} has one element, {elements[0]!r}, whose fraction is "
            "always 1: list at least two",
        )
        return None
    if not isinstance(elements, list) or len(elements) < 2:
        r.problem(
            f"{where}.elements",
            f"composition {name!r} needs a list of at least two element symbols, "
            f"got {kind_of(elements)}",
        )
        return None
    ok = True
    for j, el in enumerate(elements):
        if not isinstance(el, str) or el not in ELEMENT_SYMBOLS:
            r.problem(
                f"{where}.elements[{j}]",
                f"{el!r} is not a chemical element symbol (composition {name!r})",
            )
            ok = False
    if ok and len(set(elements)) != len(elements):
        r.problem(f"{where}.elements", f"composition {name!r}: elements must be distinct")
        ok = False
    bounds_in = r.mapping(d.get("bounds"), f"{where}.bounds")
    if not ok or bounds_in is None:
        return None
    bounds: list[tuple[float, float]] = []
    for el in elements:
        b = (0.0, 1.0)
        if el in bounds_in:
            got = pair(r, bounds_in[el], f"{where}.bounds.{el}")
            if got is None:
                ok = False
                continue
            if got[0] < 0 or got[1] > 1:
                r.problem(f"{where}.bounds.{el}", f"fractions must lie in [0, 1], got {list(got)}")
                ok = False
                continue
            b = got
        bounds.append(b)
    for key in bounds_in:
        if key not in elements:
            r.problem(f"{where}.bounds.{key}", f"{key!r} is not one of the elements {elements}")
            ok = False
    if not ok:
        return None
    lo_sum = sum(b[0] for b in bounds)
    hi_sum = sum(b[1] for b in bounds)
    if lo_sum > 1 + 1e-12 or hi_sum < 1 - 1e-12:
        r.problem(
            f"{where}.bounds",
            f"no composition {name!r} fits: lower bounds sum to {lo_sum:g} and "
            f"upper bounds to {hi_sum:g}, but fractions must sum to 1",
        )
        return None
    only = _single_composition(elements, bounds, lo_sum, hi_sum)
    if only is not None:
        r.problem(
            f"{where}.bounds",
            f"composition {name!r} can only be {only}: its bounds leave nothing to vary "
            "(widen them; a constant composition needs no parameter)",
        )
        return None
    return CompositionParam(name, tuple(elements), tuple(bounds))


def _single_composition(
    elements: list[str], bounds: list[tuple[float, float]], lo_sum: float, hi_sum: float
) -> str | None:
    """The one composition the bounds allow, as text, or None when there is room: lower (or
    upper) bounds summing to 1 pin every fraction there, and so does a single element whose
    bounds differ, the sum deciding its fraction."""
    free = [i for i, (lo, hi) in enumerate(bounds) if hi - lo > 1e-12]
    if abs(lo_sum - 1) <= 1e-12:
        point = [lo for lo, _ in bounds]
    elif abs(hi_sum - 1) <= 1e-12:
        point = [hi for _, hi in bounds]
    elif len(free) == 1:
        point = [lo for lo, _ in bounds]
        point[free[0]] += 1 - lo_sum
    else:
        return None
    return " ".join(f"{el}{x:g}" for el, x in zip(elements, point, strict=True))


def _objectives(r: Reader, value: Any) -> list[Objective]:
    if value is None:
        r.problem("objectives", "is required: a list of objectives (name, goal)")
        return []
    if not isinstance(value, list) or not value:
        r.problem("objectives", f"must be a non-empty list, got {kind_of(value)}")
        return []
    out: list[Objective] = []
    for i, item in enumerate(value):
        where = f"objectives[{i}]"
        d = r.mapping(item, where)
        if d is None:
            continue
        r.unknown_keys(d, where, keys("objectives"))
        name = _read(r, d, where, "objectives", "name")
        goal = _read(r, d, where, "objectives", "goal")
        threshold = _read(r, d, where, "objectives", "threshold")
        unit = _read(r, d, where, "objectives", "unit")
        if name and goal:
            out.append(Objective(name, goal, threshold, unit))
    return out


def _budget(r: Reader, value: Any) -> Budget:
    if value is None:
        r.problem("budget", "is required (at least `trials`)")
        return Budget(trials=1)
    d = r.mapping(value, "budget")
    if d is None:
        return Budget(trials=1)
    r.unknown_keys(d, "budget", keys("budget"))
    if "trials" not in d:
        r.problem("budget.trials", "is required: how many trials to complete")
    return Budget(
        trials=_read(r, d, "budget", "budget", "trials", fallback=1),
        wall_time=_read(r, d, "budget", "budget", "wall_time"),
        stop_at=_read(r, d, "budget", "budget", "stop_at"),
        max_failed=_read(r, d, "budget", "budget", "max_failed"),
        cost=_read(r, d, "budget", "budget", "cost"),
    )


def _fidelities(r: Reader, value: Any) -> Fidelities | None:
    if value is None:
        return None
    d = r.mapping(value, "fidelities")
    if d is None:
        return None
    r.unknown_keys(d, "fidelities", keys("fidelities"))
    levels_in = d.get("levels")
    levels: list[FidelityLevel] = []
    if levels_in is None:
        r.problem("fidelities.levels", "is required: a list of levels, each with name and cost")
    elif not isinstance(levels_in, list) or len(levels_in) < 2:
        r.problem(
            "fidelities.levels",
            f"must be a list of at least two levels (name, cost), got {kind_of(levels_in)}"
            + (f" of {len(levels_in)}" if isinstance(levels_in, list) else ""),
        )
    else:
        for i, item in enumerate(levels_in):
            where = f"fidelities.levels[{i}]"
            level = r.mapping(item, where)
            if level is None:
                continue
            r.unknown_keys(level, where, keys("fidelities.levels"))
            name = _read(r, level, where, "fidelities.levels", "name")
            cost = _read(r, level, where, "fidelities.levels", "cost")
            if name and cost is not None:
                if name in [lv.name for lv in levels]:
                    r.problem(f"{where}.name", f"{name!r} names two levels; give each its own")
                else:
                    levels.append(FidelityLevel(name, float(cost)))
    target = _read(r, d, "fidelities", "fidelities", "target")
    names = [lv.name for lv in levels]
    if target and names and target not in names:
        r.problem("fidelities.target", f"{target!r} is not one of the levels ({', '.join(names)})")
    if not target or target not in names:
        return None
    return Fidelities(tuple(levels), target)


def _prior_checks(
    r: Reader,
    value: Any,
    fidelities: Fidelities | None,
    strategy: StrategySpec,
    outcome_constraints: list[OutcomeConstraint],
) -> None:
    """What the transfer model (a multi-task GP of the one objective) cannot take yet."""
    if value is None:
        return
    if fidelities is not None:
        r.problem("prior", "a prior and `fidelities` cannot be combined (yet)")
    if strategy.method not in ("auto", "botorch", "sobol"):
        r.problem(
            "strategy.method",
            f"{strategy.method} cannot learn from a prior; use auto or botorch",
        )
    if outcome_constraints:
        r.problem("prior", "a prior cannot be combined with outcome constraints (yet)")


def _fidelity_checks(
    r: Reader,
    fidelities: Fidelities | None,
    budget: Budget,
    strategy: StrategySpec,
    objectives: list[Objective],
) -> None:
    """What a campaign with several fidelities needs of its other sections."""
    if fidelities is None:
        if budget.cost is not None:
            r.problem(
                "budget.cost",
                "needs a `fidelities` section giving each level's cost per trial",
            )
        return
    if strategy.method not in ("auto", "botorch"):
        r.problem(
            "strategy.method",
            f"{strategy.method} cannot choose among fidelities; use auto or botorch",
        )
    if len(objectives) > 1:
        r.problem("fidelities", f"works with one objective; this campaign has {len(objectives)}")
    if budget.cost is not None and budget.cost < min(lv.cost for lv in fidelities.levels):
        r.problem(
            "budget.cost",
            f"{budget.cost:g} is less than the cheapest level's cost "
            f"({min(lv.cost for lv in fidelities.levels):g}): not one trial could run",
        )


def _execution(r: Reader, value: Any) -> Execution:
    d = r.mapping(value, "execution")
    if d is None:
        return Execution()
    r.unknown_keys(d, "execution", keys("execution"))
    timeout, auto = _trial_timeout(r, d)
    e = Execution(
        trial_timeout=timeout,
        timeout_auto=auto,
        **{
            f.name: r.field(d, "execution", f)
            for f in SECTIONS["execution"]
            if f.plain  # in the table's order, which is the order problems are reported in
        },
    )
    if e.heartbeat_timeout <= e.heartbeat_interval:
        r.problem(
            "execution.heartbeat_timeout",
            f"must be longer than heartbeat_interval ({e.heartbeat_interval:g} s)",
        )
    return e


def _trial_timeout(r: Reader, d: Mapping[str, Any]) -> tuple[float | None, bool]:
    """(seconds, auto): a number fixes it; `auto` (or no key) follows the trials; `none`
    (or null) switches it off."""
    v = d.get("trial_timeout", field_of("execution", "trial_timeout").default)
    if v == "auto":
        return None, True
    if v is None or v == "none":
        return None, False
    if isinstance(v, str):
        r.problem(
            "execution.trial_timeout",
            f"expected seconds, `auto` or `none`, got {v!r}",
        )
        return None, True
    return r.number(d, "trial_timeout", "execution", positive=True), False


def _strategy(r: Reader, value: Any) -> StrategySpec:
    if isinstance(value, str):
        value = {"method": value}
    d = r.mapping(value, "strategy")
    if d is None:
        return StrategySpec()
    r.unknown_keys(d, "strategy", keys("strategy"))
    method = _read(r, d, "strategy", "strategy", "method") or "auto"
    init = _read(r, d, "strategy", "strategy", "initial_trials")
    options = r.mapping(d.get("options"), "strategy.options") or {}
    path = "strategy.options"
    r.unknown_keys(options, path, keys(path))
    for f in SECTIONS[path]:
        if f.name in options:  # absent, an option is the strategy's to default
            r.field(options, path, f)
    return StrategySpec(method=method, initial_trials=init, options=dict(options))


def _oracle(
    r: Reader, value: Any, space: list[Parameter], objectives: list[Objective]
) -> OracleSpec | None:
    if value is None:
        return None
    d = r.mapping(value, "oracle")
    if d is None:
        return None
    r.unknown_keys(d, "oracle", keys("oracle"))
    v = {f.name: r.field(d, "oracle", f) for f in SECTIONS["oracle"]}
    kind, function, table = v["kind"], v["function"], v["table"]
    o = OracleSpec(**{**v, "kind": kind or "function", "options": dict(v["options"] or {})})
    if kind == "function" and function is None:
        r.problem("oracle.function", "is required when kind is function (e.g. branin)")
    if kind == "table" and table is None:
        r.problem("oracle.table", "is required when kind is table (a CSV file)")
    if kind == "chgnet":
        materials = [p for p in space if isinstance(p, (CompositionParam, FormulaParam))]
        if len(materials) != 1:
            r.problem(
                "oracle.kind",
                "chgnet needs exactly one composition parameter (an alloy) or one formula "
                "parameter (a pool of formulas) in space",
            )
    if kind == "emt":
        comps = [p for p in space if isinstance(p, CompositionParam)]
        if len(comps) != 1:
            r.problem("oracle.kind", f"{kind} needs exactly one composition parameter in space")
        elif kind == "emt":
            bad = [e for e in comps[0].elements if e not in EMT_ELEMENTS]
            if bad:
                r.problem(
                    "oracle.kind",
                    f"EMT has no potential for {', '.join(bad)}; use {', '.join(EMT_ELEMENTS)}",
                )
    return o


def _drivers(r: Reader, value: Any) -> DriversSpec:
    d = r.mapping(value, "drivers")
    if d is None:
        return DriversSpec()
    r.unknown_keys(d, "drivers", keys("drivers"))
    return DriversSpec(**{f.name: r.field(d, "drivers", f) for f in SECTIONS["drivers"]})


def _security(r: Reader, value: Any) -> SecuritySpec:
    d = r.mapping(value, "security")
    if d is None:
        return SecuritySpec()
    r.unknown_keys(d, "security", keys("security"))
    sec = SecuritySpec(**{f.name: r.field(d, "security", f) for f in SECTIONS["security"]})
    if (sec.curve_secret_key is None) != (sec.authorized_keys is None):
        r.problem("security", "give both curve_secret_key and authorized_keys, or neither")
    return sec


def _linear_constraints(r: Reader, value: Any, space: list[Parameter]) -> list[LinearConstraint]:
    if value is None:
        return []
    if not isinstance(value, list):
        r.problem(
            "constraints",
            f"must be a list of expressions like 'a + 2*b <= 1', got {kind_of(value)}",
        )
        return []
    params = {p.name: p for p in space}
    out: list[LinearConstraint] = []
    for i, item in enumerate(value):
        where = f"constraints[{i}]"
        if not isinstance(item, str):
            r.problem(where, f"must be an expression like 'a + 2*b <= 1', got {kind_of(item)}")
            continue
        c = parse_linear(item)
        if isinstance(c, str):
            r.problem(where, f"{item!r}: {c}")
            continue
        bad = [msg for name, _ in c.terms if (msg := term_problem(name, params))]
        if bad:
            r.problem(where, f"{item!r}: {bad[0]}")
            continue
        out.append(c)
    return out


def _outcome_constraints(
    r: Reader, value: Any, objectives: list[Objective]
) -> list[OutcomeConstraint]:
    if value is None:
        return []
    if not isinstance(value, list):
        r.problem("outcome_constraints", f"must be a list, got {kind_of(value)}")
        return []
    out: list[OutcomeConstraint] = []
    for i, item in enumerate(value):
        where = f"outcome_constraints[{i}]"
        if isinstance(item, str):
            c = parse_outcome(item)
            if isinstance(c, str):
                r.problem(where, f"{item!r}: {c}")
            else:
                out.append(c)
            continue
        d = r.mapping(item, where)
        if d is None:
            continue
        r.unknown_keys(d, where, keys("outcome_constraints"))
        name_, op, bound_, unit = (
            _read(r, d, where, "outcome_constraints", k) for k in ("name", "op", "bound", "unit")
        )
        if name_ and op and bound_ is not None:
            out.append(OutcomeConstraint(name_, op, bound_, unit))
    return out
