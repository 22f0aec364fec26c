"""The validated campaign as immutable objects: parameters, objectives, budget, the Spec.

Only the types, apart from the reader (loopctl.spec_reader) that builds them, so that the
modules working with a campaign's values (loopctl.values, loopctl.space) import these
without the reader, and the reader may check pool rows with loopctl.space without a cycle.

Every class has a docstring: for a class without one, ``dataclass`` makes one with
``inspect.signature``, which made importing this module 4 % slower (3 M instructions).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from loopctl.canonical import canonical, sha256_hex


@dataclass(frozen=True)
class RangeParam:
    """A real number between two bounds, searched on a log scale when ``log``."""

    name: str
    low: float
    high: float
    log: bool = False
    unit: str | None = None
    type: Literal["range"] = "range"


@dataclass(frozen=True)
class IntegerParam:
    """A whole number between two bounds, both included."""

    name: str
    low: int
    high: int
    unit: str | None = None
    type: Literal["integer"] = "integer"


@dataclass(frozen=True)
class ChoiceParam:
    """One of a few values (texts or numbers) without an order: a category."""

    name: str
    values: tuple[str | int | float, ...]
    type: Literal["choice"] = "choice"


@dataclass(frozen=True)
class FixedParam:
    """A value every trial has; recorded with the trial, never optimised."""

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


@dataclass(frozen=True)
class StructureParam:
    """A crystal structure file (CIF, POSCAR) from a pool; models see its formula beside it."""

    name: str
    type: Literal["structure"] = "structure"


Parameter = (
    RangeParam
    | IntegerParam
    | ChoiceParam
    | FixedParam
    | CompositionParam
    | FormulaParam
    | StructureParam
)


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
class PriorSource:
    """Measurements of an earlier campaign or a CSV, over the same or an overlapping space:
    a task related to this campaign, not trials of it. ``rows`` are parameter values plus
    the objective (the first objective's name), as kept in the database."""

    rows: tuple[Mapping[str, Any], ...]
    file: str | None = None  # as the campaign file names it
    sha256: str | None = None  # of the file's bytes when it was read
    campaign: str | None = None  # a loopctl database's campaign id
    dropped: Mapping[str, int] = field(default_factory=dict)  # reason -> rows left out

    @property
    def label(self) -> str:
        return self.file or f"{len(self.rows)} rows written out"


@dataclass(frozen=True)
class Objective:
    """An outcome to minimise or maximise, as drivers report it under ``name``."""

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
    """When a campaign stops: trials completed, wall time, a good enough value, failures."""

    trials: int
    wall_time: float | None = None
    stop_at: float | None = None
    max_failed: int | None = None
    cost: float | None = None  # with fidelities: no trial is sent that would spend beyond it


@dataclass(frozen=True)
class FidelityLevel:
    """One way of measuring the objective (a cheap simulation, an experiment) and its cost
    per trial, in whatever unit the campaign's budget is given."""

    name: str
    cost: float


@dataclass(frozen=True)
class Fidelities:
    """The levels a trial may be measured at and the one the objective is judged at:
    strategies choose a level per candidate, drivers say which levels they serve."""

    levels: tuple[FidelityLevel, ...]
    target: str

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(level.name for level in self.levels)

    def cost(self, name: str) -> float:
        for level in self.levels:
            if level.name == name:
                return level.cost
        raise KeyError(name)

    @property
    def cheapest(self) -> str:
        """The cheapest level (the first listed among equals): where initial designs go."""
        return min(self.levels, key=lambda level: level.cost).name


AUTO_TIMEOUT_FACTOR = 10.0  # trial_timeout auto: this many times the slowest result so far
AUTO_TIMEOUT_FLOOR = 300.0  # ... but never less than 5 minutes
AUTO_TIMEOUT_FIRST = 86400.0  # and a day while nothing has completed yet


@dataclass(frozen=True)
class Execution:
    """How trials are run: how many at once, timeouts, retries, heartbeats, approval."""

    max_in_flight: int = 2
    # propose-ahead: candidates kept ready beyond max_in_flight, and after how many new
    # results a ready model-made one is stale (withdrawn and proposed again; 0: never)
    ahead: int = 2
    refresh_after: int = 4
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
    """What proposes candidates: the method, its initial design and its options."""

    method: str = "auto"
    initial_trials: int | None = None
    options: Mapping[str, Any] = field(default_factory=dict)  # validated by loopctl.spec_reader

    @property
    def warp_outcomes(self) -> bool | str:
        """True, False or ``auto`` (warp when leave-one-out says it predicts better)."""
        value: bool | str = self.options.get("warp_outcomes", True)
        return value


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
    """Oracle drivers that `loopctl start` spawns itself."""

    spawn: int = 0
    kind: str = "oracle"


@dataclass(frozen=True)
class SecuritySpec:
    """CURVE: the controller's secret key file and the folder of authorised driver keys."""

    curve_secret_key: str | None = None
    authorized_keys: str | None = None


@dataclass(frozen=True)
class Spec:
    """A validated campaign; ``raw`` is the stored form it was read from (and hashed)."""

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
    fidelities: Fidelities | None = None
    prior: tuple[PriorSource, ...] = ()
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
