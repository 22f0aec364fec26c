"""Campaign file (YAML) -> validated, immutable objects.

All problems in a file are collected before raising, each prefixed with the
path of the field (``space[2].bounds``), because a scientist fixing a file
should not have to rerun validation once per typo.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from loopctl.canonical import canonical, sha256_hex
from loopctl.errors import SpecError

NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")
ORACLE_KINDS = ("emt", "chgnet", "function", "table")
STRATEGY_METHODS = ("auto", "sobol", "botorch", "mobo", "nsga2", "ax")
# strategy.options: a choice of strings, a flag, or a positive number
STRATEGY_OPTIONS: dict[str, tuple[str, ...] | type] = {
    "acquisition": ("ei", "ucb"),
    "surrogate": ("auto", "gp", "gp-matern", "forest"),
    "beta": float,
    "center_point": bool,
    "learn_failures": bool,
    "warp_outcomes": bool,
    "winsorize": bool,
    "nsga2_bound": ("ucb", "mean"),
}
EMT_ELEMENTS = ("Al", "Cu", "Ag", "Au", "Ni", "Pd", "Pt")
# pymatgen's element symbols (with its D and T), written out so that checking a campaign
# file does not import pymatgen (a third of a second); tests/test_spec.py compares them
_SYMBOLS = """H He Li Be B C N O F Ne Na Mg Al Si P S Cl Ar K Ca Sc Ti V Cr Mn Fe Co Ni Cu Zn Ga
Ge As Se Br Kr Rb Sr Y Zr Nb Mo Tc Ru Rh Pd Ag Cd In Sn Sb Te I Xe Cs Ba La Ce Pr Nd Pm Sm Eu Gd
Tb Dy Ho Er Tm Yb Lu Hf Ta W Re Os Ir Pt Au Hg Tl Pb Bi Po At Rn Fr Ra Ac Th Pa U Np Pu Am Cm Bk
Cf Es Fm Md No Lr Rf Db Sg Bh Hs Mt Ds Rg Cn Nh Fl Mc Lv Ts Og D T"""
ELEMENT_SYMBOLS = frozenset(_SYMBOLS.split())


@dataclass(frozen=True)
class RangeParam:
    name: str
    low: float
    high: float
    log: bool = False
    unit: str | None = None
    type: Literal["range"] = "range"


@dataclass(frozen=True)
class IntegerParam:
    name: str
    low: int
    high: int
    unit: str | None = None
    type: Literal["integer"] = "integer"


@dataclass(frozen=True)
class ChoiceParam:
    name: str
    values: tuple[str | int | float, ...]
    type: Literal["choice"] = "choice"


@dataclass(frozen=True)
class FixedParam:
    name: str
    value: str | int | float
    type: Literal["fixed"] = "fixed"


@dataclass(frozen=True)
class CompositionParam:
    """Fractions of named elements; always sum to one, each within its bounds."""

    name: str
    elements: tuple[str, ...]
    bounds: tuple[tuple[float, float], ...]
    type: Literal["composition"] = "composition"


@dataclass(frozen=True)
class FormulaParam:
    """A chemical formula from a pool (any elements); models see element-property descriptors."""

    name: str
    type: Literal["formula"] = "formula"


Parameter = RangeParam | IntegerParam | ChoiceParam | FixedParam | CompositionParam | FormulaParam


@dataclass(frozen=True)
class LinearConstraint:
    """``sum(coefficient * parameter) <op> bound`` in the parameters' own units.

    A term names a range or integer parameter, or one element of a composition
    as ``name.El`` (its fraction).
    """

    terms: tuple[tuple[str, float], ...]
    op: Literal["<=", ">="]
    bound: float
    text: str

    def slack(self, values: Mapping[str, Any]) -> float:
        """Positive or zero when satisfied; how far inside the boundary, in its units."""
        total = sum(c * _term_value(values, name) for name, c in self.terms)
        return self.bound - total if self.op == "<=" else total - self.bound


def _term_value(values: Mapping[str, Any], name: str) -> float:
    if name in values:
        return float(values[name])
    base, _, element = name.rpartition(".")
    return float(values[base][element])


@dataclass(frozen=True)
class OutcomeConstraint:
    """A measured quantity that must satisfy ``<op> bound`` for a trial to count as good."""

    name: str
    op: Literal["<=", ">="]
    bound: float
    unit: str | None = None

    def satisfied(self, value: float) -> bool:
        return value <= self.bound if self.op == "<=" else value >= self.bound


@dataclass(frozen=True)
class PoolSpec:
    """The finite set of candidates of a pool campaign, rows keyed by parameter name."""

    rows: tuple[Mapping[str, Any], ...]
    file: str | None = None


@dataclass(frozen=True)
class Objective:
    name: str
    goal: Literal["minimize", "maximize"]
    threshold: float | None = None
    unit: str | None = None

    @property
    def sign(self) -> float:
        """+1 when larger is better; strategies maximise ``sign * value``."""
        return 1.0 if self.goal == "maximize" else -1.0


@dataclass(frozen=True)
class Budget:
    trials: int
    wall_time: float | None = None
    stop_at: float | None = None
    max_failed: int | None = None


AUTO_TIMEOUT_FACTOR = 10.0  # trial_timeout auto: this many times the slowest result so far
AUTO_TIMEOUT_FLOOR = 300.0  # ... but never less than 5 minutes
AUTO_TIMEOUT_FIRST = 86400.0  # and a day while nothing has completed yet


@dataclass(frozen=True)
class Execution:
    max_in_flight: int = 2
    trial_timeout: float | None = None  # seconds; with timeout_auto, only a last resort
    # `auto` (the default): the timeout follows the campaign's own trials, so a trial that a
    # live driver holds without ever answering is re-dispatched, whether trials take
    # milliseconds (an oracle) or hours (DFT, a person at a bench)
    timeout_auto: bool = True
    retries: int = 2
    heartbeat_interval: float = 1.0
    heartbeat_timeout: float = 10.0
    approval: str = "auto"  # manual: proposals wait for `loopctl approve`
    max_drivers: int = 128  # connected at once; more are refused (with nothing recorded)


@dataclass(frozen=True)
class StrategySpec:
    method: str = "auto"
    initial_trials: int | None = None
    options: Mapping[str, Any] = field(default_factory=dict)  # validated by _strategy

    @property
    def warp_outcomes(self) -> bool:
        return bool(self.options.get("warp_outcomes", True))


@dataclass(frozen=True)
class OracleSpec:
    """What the built-in oracle driver should compute; sent to drivers in WELCOME."""

    kind: str = "function"
    function: str | None = None
    table: str | None = None
    latency: float = 0.0
    noise: float = 0.0
    fail_rate: float = 0.0
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DriversSpec:
    spawn: int = 0
    kind: str = "oracle"


@dataclass(frozen=True)
class SecuritySpec:
    """CURVE: the controller's secret key file and the folder of authorised driver keys."""

    curve_secret_key: str | None = None
    authorized_keys: str | None = None


@dataclass(frozen=True)
class Spec:
    name: str
    seed: int
    space: tuple[Parameter, ...]
    objectives: tuple[Objective, ...]
    budget: Budget
    execution: Execution = Execution()
    strategy: StrategySpec = StrategySpec()
    oracle: OracleSpec | None = None
    drivers: DriversSpec = DriversSpec()
    security: SecuritySpec = SecuritySpec()
    parameter_constraints: tuple[LinearConstraint, ...] = ()
    outcome_constraints: tuple[OutcomeConstraint, ...] = ()
    pool: PoolSpec | None = None
    robot: Mapping[str, Any] = field(default_factory=dict)  # checked by the robot driver
    description: str = ""
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False)
    source: str | None = field(default=None, compare=False)

    @property
    def source_file(self) -> str | None:
        """Absolute path of the campaign file, when the spec came from one that exists."""
        if self.source and Path(self.source).is_file():
            return str(Path(self.source).resolve())
        return None

    @property
    def base_dir(self) -> Path | None:
        """Folder that relative paths in the file (oracle.table) are relative to."""
        return Path(self.source_file).parent if self.source_file else None

    @property
    def hash(self) -> str:
        """Of the stored form (:attr:`raw`), the one form every reader checks."""
        return spec_hash(self.raw)

    def parameter(self, name: str) -> Parameter:
        for p in self.space:
            if p.name == name:
                return p
        raise KeyError(name)

    def objective(self, name: str) -> Objective:
        for o in self.objectives:
            if o.name == name:
                return o
        raise KeyError(name)

    @property
    def metric_names(self) -> tuple[str, ...]:
        """Everything a result must report: the objectives, then constrained outcomes."""
        return tuple(o.name for o in self.objectives) + tuple(
            c.name for c in self.outcome_constraints if c.name not in self.objective_names
        )

    @property
    def objective_names(self) -> tuple[str, ...]:
        return tuple(o.name for o in self.objectives)

    def feasible(self, outcomes: Mapping[str, float]) -> bool:
        """Whether measured outcomes meet every outcome constraint."""
        return all(c.satisfied(outcomes[c.name]) for c in self.outcome_constraints)


def spec_hash(raw: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON the database stores; ``raw`` as stored, never re-parsed."""
    return sha256_hex(canonical(raw))


# --------------------------------------------------------------------------- loading


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


def parse_spec(data: Any, source: str = "campaign") -> Spec:
    """Validate a decoded campaign mapping. Raises SpecError listing every problem."""
    r = _Reader()
    if not isinstance(data, Mapping):
        raise SpecError(
            ["the file must be a mapping of fields (name, space, objectives, ...)"], source=source
        )
    r.unknown_keys(
        data,
        "",
        {
            "name",
            "description",
            "seed",
            "space",
            "objectives",
            "budget",
            "execution",
            "strategy",
            "oracle",
            "drivers",
            "security",
            "robot",
            "constraints",
            "outcome_constraints",
            "pool",
        },
    )
    name = r.string(data, "name", "", required=True, pattern=NAME_RE) or "unnamed"
    description = r.string(data, "description", "") or ""
    seed = r.integer(data, "seed", "", default=0, low=0)
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
    pool = _pool(r, data.get("pool"), space, source)
    extra = [c.name for c in outcome_constraints if c.name not in {o.name for o in objectives}]
    if oracle is not None and extra:
        r.problem(
            "outcome_constraints",
            f"the built-in oracle computes only the objectives, not {extra[0]!r}; "
            "use a driver that measures it",
        )
    if any(isinstance(p, FormulaParam) for p in space) and pool is None:
        r.problem("space", "a formula parameter needs a `pool` of candidates to choose from")
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
    raw = _stored_form(r, data, pool) if not r.problems else {}
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
        robot=dict(robot),
        description=description,
        raw=raw,
        source=source,
    )


def _stored_form(r: _Reader, data: Mapping[str, Any], pool: PoolSpec | None) -> dict[str, Any]:
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
        return where or "campaign", f"{_kind(v)} cannot be stored; quote it to make it text"
    return None


class _Reader:
    """Typed field access that records problems instead of raising at the first one."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def problem(self, where: str, message: str) -> None:
        self.problems.append(f"{where}: {message}")

    @staticmethod
    def at(path: str, key: str) -> str:
        return f"{path}.{key}" if path else key

    def unknown_keys(self, d: Mapping[str, Any], path: str, allowed: set[str]) -> None:
        for key in d:
            if key not in allowed:
                self.problem(
                    self.at(path, str(key)),
                    f"unknown field; expected one of {', '.join(sorted(allowed))}",
                )

    def mapping(self, value: Any, path: str) -> Mapping[str, Any] | None:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.problem(path, f"must be a mapping, got {_kind(value)}")
            return None
        return value

    def string(
        self,
        d: Mapping[str, Any],
        key: str,
        path: str,
        *,
        required: bool = False,
        pattern: re.Pattern[str] | None = None,
        choices: tuple[str, ...] = (),
        default: str | None = None,
    ) -> str | None:
        where = self.at(path, key)
        if key not in d or d[key] is None:
            if required:
                self.problem(where, "is required")
            return default
        v = d[key]
        if not isinstance(v, str) or not v.strip():
            self.problem(where, f"must be a non-empty string, got {_kind(v)}")
            return default
        if pattern is not None and not pattern.match(v):
            self.problem(
                where,
                f"{v!r} is not a valid name (letters, digits, _ . -; "
                "must start with a letter or _)",
            )
            return default
        if choices and v not in choices:
            self.problem(where, f"{v!r} is not one of {', '.join(choices)}")
            return default
        return v

    def number(
        self,
        d: Mapping[str, Any],
        key: str,
        path: str,
        *,
        default: float | None = None,
        required: bool = False,
        low: float | None = None,
        high: float | None = None,
        positive: bool = False,
    ) -> float | None:
        where = self.at(path, key)
        if key not in d or d[key] is None:
            if required:
                self.problem(where, "is required")
            return default
        return self.check_number(
            d[key], where, low=low, high=high, positive=positive, default=default
        )

    def check_number(
        self,
        v: Any,
        where: str,
        *,
        default: float | None = None,
        low: float | None = None,
        high: float | None = None,
        positive: bool = False,
    ) -> float | None:
        if isinstance(v, str):  # any spelling float() reads: quoted, 1_000.5, ' 2.5 '
            try:
                x = float(v)
            except ValueError:
                self.problem(where, f"must be a number, got {_kind(v)}")
                return default
        elif isinstance(v, bool) or not isinstance(v, (int, float)):
            self.problem(where, f"must be a number, got {_kind(v)}")
            return default
        else:
            x = float(v)
        if not math.isfinite(x):
            self.problem(where, f"must be a finite number, got {v!r}")
            return default
        if positive and x <= 0:
            self.problem(where, f"must be greater than 0, got {v}")
            return default
        if low is not None and x < low:
            self.problem(where, f"must be at least {low:g}, got {v}")
            return default
        if high is not None and x > high:
            self.problem(where, f"must be at most {high:g}, got {v}")
            return default
        return x

    def integer(
        self, d: Mapping[str, Any], key: str, path: str, *, default: int, low: int | None = None
    ) -> int:
        where = self.at(path, key)
        if key not in d or d[key] is None:
            return default
        v = d[key]
        if isinstance(v, bool) or not isinstance(v, int):
            self.problem(where, f"must be a whole number, got {_kind(v)}")
            return default
        if low is not None and v < low:
            self.problem(where, f"must be at least {low}, got {v}")
            return default
        return v

    def boolean(self, d: Mapping[str, Any], key: str, path: str, default: bool) -> bool:
        v = d.get(key, default)
        if not isinstance(v, bool):
            self.problem(self.at(path, key), f"must be true or false, got {_kind(v)}")
            return default
        return v


def _kind(v: Any) -> str:
    if v is None:
        return "nothing"
    if isinstance(v, bool):
        return f"a boolean ({v})"
    if isinstance(v, str):
        return f"the text {v!r}"
    if isinstance(v, (int, float)):
        return f"the number {v}"
    if isinstance(v, Mapping):
        return "a mapping"
    if isinstance(v, list):
        return "a list"
    return type(v).__name__


def _pair(r: _Reader, v: Any, where: str) -> tuple[float, float] | None:
    if not isinstance(v, list) or len(v) != 2:
        r.problem(where, f"must be a list of two numbers [lower, upper], got {_kind(v)}")
        return None
    lo = r.check_number(v[0], f"{where}[0]")
    hi = r.check_number(v[1], f"{where}[1]")
    if lo is None or hi is None:
        return None
    if lo > hi:
        r.problem(where, f"lower bound {v[0]} is above upper bound {v[1]}")
        return None
    return lo, hi


PARAM_TYPES = ("range", "integer", "choice", "fixed", "composition", "formula")


def _space(r: _Reader, value: Any) -> list[Parameter]:
    if value is None:
        r.problem("space", "is required: a list of parameters")
        return []
    if not isinstance(value, list) or not value:
        r.problem("space", f"must be a non-empty list of parameters, got {_kind(value)}")
        return []
    params: list[Parameter] = []
    for i, item in enumerate(value):
        where = f"space[{i}]"
        d = r.mapping(item, where)
        if d is None:
            continue
        name = r.string(d, "name", where, required=True, pattern=NAME_RE)
        ptype = r.string(d, "type", where, required=True, choices=PARAM_TYPES)
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
    r: _Reader, d: Mapping[str, Any], where: str, name: str, ptype: str
) -> Parameter | None:
    common = {"name", "type", "description"}
    if ptype == "range":
        r.unknown_keys(d, where, common | {"bounds", "log", "unit"})
        log = r.boolean(d, "log", where, False)
        unit = r.string(d, "unit", where)
        b = _pair(r, d.get("bounds"), f"{where}.bounds")
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
        r.unknown_keys(d, where, common | {"bounds", "unit"})
        unit = r.string(d, "unit", where)
        b = _pair(r, d.get("bounds"), f"{where}.bounds")
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
        r.unknown_keys(d, where, common | {"values"})
        values = d.get("values")
        if not isinstance(values, list) or len(values) < 2:
            r.problem(
                f"{where}.values", f"must be a list of at least two values, got {_kind(values)}"
            )
            return None
        bad = [v for v in values if isinstance(v, bool) or not isinstance(v, (str, int, float))]
        if bad:
            r.problem(f"{where}.values", f"values must be text or numbers, got {_kind(bad[0])}")
            return None
        if len(set(values)) != len(values):
            r.problem(f"{where}.values", "values must be distinct")
            return None
        return ChoiceParam(name, tuple(values))
    if ptype == "fixed":
        r.unknown_keys(d, where, common | {"value"})
        v = d.get("value")
        if isinstance(v, bool) or not isinstance(v, (str, int, float)):
            r.problem(f"{where}.value", f"must be text or a number, got {_kind(v)}")
            return None
        return FixedParam(name, v)
    if ptype == "formula":
        r.unknown_keys(d, where, common)
        return FormulaParam(name)
    return _composition(r, d, where, name, common)


def _composition(
    r: _Reader, d: Mapping[str, Any], where: str, name: str, common: set[str]
) -> CompositionParam | None:
    r.unknown_keys(d, where, common | {"elements", "bounds"})
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
            f"got {_kind(elements)}",
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
            got = _pair(r, bounds_in[el], f"{where}.bounds.{el}")
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


def _objectives(r: _Reader, value: Any) -> list[Objective]:
    if value is None:
        r.problem("objectives", "is required: a list of objectives (name, goal)")
        return []
    if not isinstance(value, list) or not value:
        r.problem("objectives", f"must be a non-empty list, got {_kind(value)}")
        return []
    out: list[Objective] = []
    for i, item in enumerate(value):
        where = f"objectives[{i}]"
        d = r.mapping(item, where)
        if d is None:
            continue
        r.unknown_keys(d, where, {"name", "goal", "threshold", "unit", "description"})
        name = r.string(d, "name", where, required=True, pattern=NAME_RE)
        goal = r.string(d, "goal", where, required=True, choices=("minimize", "maximize"))
        threshold = r.number(d, "threshold", where)
        unit = r.string(d, "unit", where)
        if name and goal:
            out.append(Objective(name, goal, threshold, unit))  # type: ignore[arg-type]
    return out


def _budget(r: _Reader, value: Any) -> Budget:
    if value is None:
        r.problem("budget", "is required (at least `trials`)")
        return Budget(trials=1)
    d = r.mapping(value, "budget")
    if d is None:
        return Budget(trials=1)
    r.unknown_keys(d, "budget", {"trials", "wall_time", "stop_at", "max_failed"})
    if "trials" not in d:
        r.problem("budget.trials", "is required: how many trials to complete")
    trials = r.integer(d, "trials", "budget", default=1, low=1)
    wall = r.number(d, "wall_time", "budget", positive=True)
    stop_at = r.number(d, "stop_at", "budget")
    max_failed = d.get("max_failed")
    mf = r.integer(d, "max_failed", "budget", default=0, low=0) if max_failed is not None else None
    return Budget(trials=trials, wall_time=wall, stop_at=stop_at, max_failed=mf)


def _execution(r: _Reader, value: Any) -> Execution:
    d = r.mapping(value, "execution")
    if d is None:
        return Execution()
    keys = {
        "max_in_flight",
        "trial_timeout",
        "retries",
        "heartbeat_interval",
        "heartbeat_timeout",
        "approval",
        "max_drivers",
    }
    r.unknown_keys(d, "execution", keys)
    timeout, auto = _trial_timeout(r, d)
    e = Execution(
        max_in_flight=r.integer(d, "max_in_flight", "execution", default=2, low=1),
        trial_timeout=timeout,
        timeout_auto=auto,
        retries=r.integer(d, "retries", "execution", default=2, low=0),
        heartbeat_interval=r.number(
            d, "heartbeat_interval", "execution", default=1.0, positive=True
        )
        or 1.0,
        heartbeat_timeout=r.number(d, "heartbeat_timeout", "execution", default=10.0, positive=True)
        or 10.0,
        approval=r.string(d, "approval", "execution", choices=("auto", "manual"), default="auto")
        or "auto",
        max_drivers=r.integer(d, "max_drivers", "execution", default=128, low=1),
    )
    if e.heartbeat_timeout <= e.heartbeat_interval:
        r.problem(
            "execution.heartbeat_timeout",
            f"must be longer than heartbeat_interval ({e.heartbeat_interval:g} s)",
        )
    return e


def _trial_timeout(r: _Reader, d: Mapping[str, Any]) -> tuple[float | None, bool]:
    """(seconds, auto): a number fixes it; `auto` (or no key) follows the trials; `none`
    (or null) switches it off."""
    v = d.get("trial_timeout", "auto")
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


def _strategy(r: _Reader, value: Any) -> StrategySpec:
    if isinstance(value, str):
        value = {"method": value}
    d = r.mapping(value, "strategy")
    if d is None:
        return StrategySpec()
    r.unknown_keys(d, "strategy", {"method", "initial_trials", "options"})
    method = r.string(d, "method", "strategy", choices=STRATEGY_METHODS, default="auto") or "auto"
    initial = d.get("initial_trials")
    init = (
        r.integer(d, "initial_trials", "strategy", default=0, low=1)
        if initial is not None
        else None
    )
    options = r.mapping(d.get("options"), "strategy.options") or {}
    path = "strategy.options"
    r.unknown_keys(options, path, set(STRATEGY_OPTIONS))
    for key, kind in STRATEGY_OPTIONS.items():
        if key not in options:
            continue
        if isinstance(kind, tuple):
            r.string(options, key, path, choices=kind)
        elif kind is bool:
            r.boolean(options, key, path, default=True)
        else:
            r.number(options, key, path, positive=True)
    return StrategySpec(method=method, initial_trials=init, options=dict(options))


def _oracle(
    r: _Reader, value: Any, space: list[Parameter], objectives: list[Objective]
) -> OracleSpec | None:
    if value is None:
        return None
    d = r.mapping(value, "oracle")
    if d is None:
        return None
    r.unknown_keys(
        d, "oracle", {"kind", "function", "table", "latency", "noise", "fail_rate", "options"}
    )
    kind = r.string(d, "kind", "oracle", required=True, choices=ORACLE_KINDS)
    function = r.string(d, "function", "oracle")
    table = r.string(d, "table", "oracle")
    o = OracleSpec(
        kind=kind or "function",
        function=function,
        table=table,
        latency=r.number(d, "latency", "oracle", default=0.0, low=0.0) or 0.0,
        noise=r.number(d, "noise", "oracle", default=0.0, low=0.0) or 0.0,
        fail_rate=r.number(d, "fail_rate", "oracle", default=0.0, low=0.0, high=1.0) or 0.0,
        options=dict(r.mapping(d.get("options"), "oracle.options") or {}),
    )
    if kind == "function" and function is None:
        r.problem("oracle.function", "is required when kind is function (e.g. branin)")
    if kind == "table" and table is None:
        r.problem("oracle.table", "is required when kind is table (a CSV file)")
    if kind in ("emt", "chgnet"):
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


def _drivers(r: _Reader, value: Any) -> DriversSpec:
    d = r.mapping(value, "drivers")
    if d is None:
        return DriversSpec()
    r.unknown_keys(d, "drivers", {"spawn", "kind"})
    return DriversSpec(
        spawn=r.integer(d, "spawn", "drivers", default=0, low=0),
        kind=r.string(d, "kind", "drivers", choices=("oracle",), default="oracle") or "oracle",
    )


def _security(r: _Reader, value: Any) -> SecuritySpec:
    d = r.mapping(value, "security")
    if d is None:
        return SecuritySpec()
    r.unknown_keys(d, "security", {"curve_secret_key", "authorized_keys"})
    sec = SecuritySpec(
        r.string(d, "curve_secret_key", "security"), r.string(d, "authorized_keys", "security")
    )
    if (sec.curve_secret_key is None) != (sec.authorized_keys is None):
        r.problem("security", "give both curve_secret_key and authorized_keys, or neither")
    return sec


# ------------------------------------------------------------------ constraints and pools

_TERM_RE = re.compile(
    r"\s*([+-])?\s*(?:(\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)\s*\*?\s*)?"
    r"([A-Za-z_][A-Za-z0-9_.\-]*)\s*"
)
_COMPARE_RE = re.compile(r"^(?P<lhs>.+?)(?P<op><=|>=)(?P<rhs>[^<>=]+)$")


def _linear_constraints(r: _Reader, value: Any, space: list[Parameter]) -> list[LinearConstraint]:
    if value is None:
        return []
    if not isinstance(value, list):
        r.problem(
            "constraints", f"must be a list of expressions like 'a + 2*b <= 1', got {_kind(value)}"
        )
        return []
    params = {p.name: p for p in space}
    out: list[LinearConstraint] = []
    for i, item in enumerate(value):
        where = f"constraints[{i}]"
        if not isinstance(item, str):
            r.problem(where, f"must be an expression like 'a + 2*b <= 1', got {_kind(item)}")
            continue
        c = _parse_linear(item)
        if isinstance(c, str):
            r.problem(where, f"{item!r}: {c}")
            continue
        bad = [msg for name, _ in c.terms if (msg := _term_problem(name, params))]
        if bad:
            r.problem(where, f"{item!r}: {bad[0]}")
            continue
        out.append(c)
    return out


def _parse_linear(text: str) -> LinearConstraint | str:
    """The constraint, or what is wrong with the expression."""
    m = _COMPARE_RE.match(text.strip())
    if m is None:
        return "expected one comparison, <= or >=, with a number on the right"
    try:
        bound = float(m["rhs"])
    except ValueError:
        return f"the right-hand side {m['rhs'].strip()!r} is not a number"
    if not math.isfinite(bound):
        return "the right-hand side must be finite"
    lhs, pos = m["lhs"], 0
    coefficients: dict[str, float] = {}
    while pos < len(lhs):
        t = _TERM_RE.match(lhs, pos)
        if t is None or t.end() == pos or (pos > 0 and t[1] is None):
            return f"cannot read the term starting at {lhs[pos:].strip()!r}; write e.g. '2*a - b'"
        coef = float(t[2]) if t[2] else 1.0
        coef = -coef if t[1] == "-" else coef
        coefficients[t[3]] = coefficients.get(t[3], 0.0) + coef
        pos = t.end()
    terms = tuple((n, c) for n, c in coefficients.items() if c != 0.0)
    if not terms:
        return "names no parameter"
    return LinearConstraint(terms, m["op"], bound, " ".join(text.split()))  # type: ignore[arg-type]


def _term_problem(name: str, params: Mapping[str, Parameter]) -> str | None:
    p = params.get(name)
    if isinstance(p, IntegerParam) or (isinstance(p, RangeParam) and not p.log):
        return None
    if isinstance(p, RangeParam):
        return f"{name!r} is on a log scale; a linear constraint on it is not linear"
    if p is not None:
        return (
            f"{name!r} is a {p.type} parameter; only ranges, integers and "
            "composition fractions can appear"
        )
    base, _, element = name.rpartition(".")
    comp = params.get(base)
    if isinstance(comp, CompositionParam) and element in comp.elements:
        return None
    return f"{name!r} is not a parameter (nor composition.Element) of this campaign"


def _outcome_constraints(
    r: _Reader, value: Any, objectives: list[Objective]
) -> list[OutcomeConstraint]:
    if value is None:
        return []
    if not isinstance(value, list):
        r.problem("outcome_constraints", f"must be a list, got {_kind(value)}")
        return []
    out: list[OutcomeConstraint] = []
    for i, item in enumerate(value):
        where = f"outcome_constraints[{i}]"
        if isinstance(item, str):
            m = _COMPARE_RE.match(item.strip())
            name = m["lhs"].strip() if m else ""
            try:
                bound = float(m["rhs"]) if m else math.nan
            except ValueError:
                bound = math.nan
            if m is None or not NAME_RE.match(name) or not math.isfinite(bound):
                r.problem(where, f"{item!r}: expected 'name >= number' or 'name <= number'")
                continue
            out.append(OutcomeConstraint(name, m["op"], bound))  # type: ignore[arg-type]
            continue
        d = r.mapping(item, where)
        if d is None:
            continue
        r.unknown_keys(d, where, {"name", "op", "bound", "unit", "description"})
        name_ = r.string(d, "name", where, required=True, pattern=NAME_RE)
        op = r.string(d, "op", where, required=True, choices=("<=", ">="))
        bound_ = r.number(d, "bound", where, required=True)
        unit = r.string(d, "unit", where)
        if name_ and op and bound_ is not None:
            out.append(OutcomeConstraint(name_, op, bound_, unit))  # type: ignore[arg-type]
    return out


def _pool(r: _Reader, value: Any, space: list[Parameter], source: str) -> PoolSpec | None:
    """Read the candidates (CSV or inline rows) and check each against the space."""
    if value is None:
        return None
    d = r.mapping(value, "pool")
    if d is None:
        return None
    r.unknown_keys(d, "pool", {"file", "rows", "columns"})
    file = r.string(d, "file", "pool")
    columns = r.mapping(d.get("columns"), "pool.columns") or {}
    rows_in: list[Mapping[str, Any]]
    if d.get("rows") is not None:
        rows_in = d["rows"] if isinstance(d["rows"], list) else []
        if not rows_in:
            r.problem(
                "pool.rows", f"must be a non-empty list of candidates, got {_kind(d['rows'])}"
            )
            return None
    elif file is not None:
        read = _read_pool_csv(r, file, source)
        if read is None:
            return None
        rows_in = read
    else:
        r.problem("pool", "give `file` (a CSV of candidates) or `rows`")
        return None
    for pname, col in columns.items():
        if pname not in {p.name for p in space}:
            r.problem(f"pool.columns.{pname}", "is not a parameter of this campaign")
        elif not isinstance(col, str):
            r.problem(f"pool.columns.{pname}", f"must be a column name, got {_kind(col)}")
    if r.problems:
        return None
    from loopctl.errors import ValidationError
    from loopctl.space import Space  # space imports this module; only needed here

    check = Space(space)
    rename = {col: pname for pname, col in columns.items()}
    rows: list[Mapping[str, Any]] = []
    seen: dict[tuple[Any, ...], int] = {}
    bad = 0
    for i, row in enumerate(rows_in):
        where = f"pool row {i + 2 if file and d.get('rows') is None else i + 1}"
        if not isinstance(row, Mapping):
            r.problem(where, f"must be a mapping of parameter values, got {_kind(row)}")
            return None
        named = {rename.get(k, k): v for k, v in row.items()}
        try:
            values = check.validate(check.unflat(named, where), where)
        except ValidationError as exc:
            bad += 1
            if bad <= 5:
                r.problem("pool", str(exc))
            continue
        key = check.key(values)
        if key in seen:
            r.problem(where, f"repeats candidate {seen[key]}; a pool lists each candidate once")
            continue
        seen[key] = i + 1
        rows.append(values)
    if bad > 5:
        r.problem("pool", f"... and {bad - 5} more rows with problems")
    if len(rows) < 2 and not r.problems:
        r.problem("pool", "needs at least two candidates")
    return PoolSpec(tuple(rows), file)


def _read_pool_csv(r: _Reader, file: str, source: str) -> list[Mapping[str, Any]] | None:
    import csv

    path = Path(file)
    if not path.is_absolute() and Path(source).is_file():
        path = Path(source).resolve().parent / path
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:  # some CSVs start with a BOM
            reader = csv.DictReader(f)
            return [{k: _cell(v) for k, v in row.items() if k is not None} for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        r.problem("pool.file", f"cannot read {path}: {exc}")
        return None


def _cell(text: str | None) -> Any:
    """CSV text to a number where it is one; formulas and labels stay text."""
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        return text.strip()
