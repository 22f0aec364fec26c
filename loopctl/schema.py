"""Every field of a campaign file, in one table: name, type, default, meaning, allowed values.

The reader (loopctl.spec_reader) takes from it which keys each mapping may have and how each
plain field is checked; docs/field_tables.py writes the field tables of
docs/campaign-file.md from it and loopctl.json_schema the JSON Schema of `loopctl schema`,
so the three cannot drift apart. What a table cannot say (a composition's bounds admit a
composition, a constraint names parameters that exist, botorch takes one objective) stays in
the reader's code.

Plain data and no third-party imports: `loopctl validate` must start fast (pydantic cost
0.2 s to import, msgspec stops at the first error where every error is reported).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")
PARAM_TYPES = ("range", "integer", "choice", "fixed", "composition", "formula", "structure")
ORACLE_KINDS = ("emt", "chgnet", "function", "table")
STRATEGY_METHODS = ("auto", "sobol", "botorch", "mobo", "nsga2", "ax")
EMT_ELEMENTS = ("Al", "Cu", "Ag", "Au", "Ni", "Pd", "Pt")
# pymatgen's element symbols (with its D and T), written out so that checking a campaign
# file does not import pymatgen (a third of a second); tests/test_spec.py compares them
_SYMBOLS = """H He Li Be B C N O F Ne Na Mg Al Si P S Cl Ar K Ca Sc Ti V Cr Mn Fe Co Ni Cu Zn Ga
Ge As Se Br Kr Rb Sr Y Zr Nb Mo Tc Ru Rh Pd Ag Cd In Sn Sb Te I Xe Cs Ba La Ce Pr Nd Pm Sm Eu Gd
Tb Dy Ho Er Tm Yb Lu Hf Ta W Re Os Ir Pt Au Hg Tl Pb Bi Po At Rn Fr Ra Ac Th Pa U Np Pu Am Cm Bk
Cf Es Fm Md No Lr Rf Db Sg Bh Hs Mt Ds Rg Cn Nh Fl Mc Lv Ts Og D T"""
ELEMENT_SYMBOLS = frozenset(_SYMBOLS.split())


class _Required:
    """The default of a field that must be given."""

    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Final = _Required()

# How a field is checked. The reader reads the plain kinds itself (Field.plain); the others
# are read by code of their own in loopctl.spec_reader, and the table only documents them
# and lists them among the keys their mapping allows.
PLAIN_KINDS = ("name", "text", "choice", "integer", "number", "boolean", "mapping")
KINDS = (
    *PLAIN_KINDS,
    "section",  # a mapping whose fields are the table's section `section`
    "list",  # a list of mappings, each with the fields of section `section`
    "any",  # not checked here (free text, or settings read by a driver)
    "custom",  # read by its own code; `json` gives its JSON Schema
)


class Field:
    """One field of a campaign file; read-only by convention (the table is shared).

    A plain class: as a frozen dataclass (0.5 ms) or a NamedTuple (0.25 ms) it cost more to
    create than the table itself, on every start of `loopctl`.
    """

    __slots__ = (
        "choices",
        "default",
        "doc_default",
        "doc_type",
        "high",
        "json",
        "kind",
        "low",
        "meaning",
        "name",
        "positive",
        "section",
        "types",
    )

    def __init__(
        self,
        name: str,
        kind: str,
        meaning: str,
        *,
        default: Any = None,  # REQUIRED, or the value the reader uses when the field is absent
        choices: tuple[Any, ...] = (),
        low: float | None = None,  # numbers and integers: the smallest value allowed
        high: float | None = None,
        positive: bool = False,  # numbers: greater than 0
        section: str | None = None,  # kinds section and list: the fields of the items
        types: tuple[str, ...] = (),  # space: the parameter types with this field (none: all)
        doc_type: str | None = None,  # the docs' "type" column, when the kind says too little
        doc_default: str | None = None,  # the docs' "default" column, likewise
        json: Mapping[str, Any] | None = None,  # custom fields: their JSON Schema
    ) -> None:
        self.name = name
        self.kind = kind
        self.meaning = meaning
        self.default = default
        self.choices = choices
        self.low = low
        self.high = high
        self.positive = positive
        self.section = section
        self.types = types
        self.doc_type = doc_type
        self.doc_default = doc_default
        self.json = json

    def __repr__(self) -> str:
        return f"Field({self.name!r}, {self.kind!r})"

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    @property
    def plain(self) -> bool:
        """Read by the generic reader from kind, default and bounds alone."""
        return self.kind in PLAIN_KINDS


_PAIR: dict[str, Any] = {"$ref": "#/$defs/pair"}
_SCALAR: dict[str, Any] = {"type": ["string", "number"]}
_COMPARISON = r"^.+(<=|>=)[^<>=]+$"

# Each section lists its fields in the order the reader checks them, which is the order
# problems are reported in (and the order of the docs' rows).
SECTIONS: dict[str, tuple[Field, ...]] = {
    "top": (
        Field(
            "name",
            "name",
            "letters, digits, `_ . -`, starting with a letter or `_`",
            default=REQUIRED,
        ),
        Field("description", "text", "shown by `loopctl demo` and in reports", doc_default='`""`'),
        Field(
            "seed", "integer", "the same seed and data give the same proposals", default=0, low=0
        ),
        Field(
            "space",
            "custom",
            "the parameters (below); at least one must not be fixed",
            default=REQUIRED,
            doc_type="list",
            json={"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/parameter"}},
        ),
        Field(
            "objectives",
            "list",
            "what to optimise (below)",
            default=REQUIRED,
            section="objectives",
        ),
        Field("budget", "section", "when to stop (below)", default=REQUIRED, section="budget"),
        Field(
            "execution",
            "section",
            "how trials run",
            section="execution",
            doc_default="defaults below",
        ),
        Field(
            "strategy",
            "custom",
            "how candidates are proposed",
            doc_type="mapping or method name",
            doc_default="`auto`",
            json={
                "anyOf": [
                    {"enum": list(STRATEGY_METHODS)},
                    {"$ref": "#/$defs/strategy"},
                    {"type": "null"},
                ]
            },
        ),
        Field("oracle", "section", "what the built-in oracle driver computes", section="oracle"),
        Field(
            "drivers",
            "section",
            "oracle drivers started with the controller",
            section="drivers",
            doc_default="`spawn: 0`",
        ),
        Field(
            "security",
            "section",
            "CURVE encryption and authentication of drivers (below)",
            section="security",
        ),
        Field(
            "robot",
            "any",
            "how trials become jobs of a lab robot; read by the robot driver (docs/drivers.md)",
            doc_type="mapping",
            json={"type": ["object", "null"]},
        ),
        Field(
            "constraints",
            "custom",
            "linear constraints on the parameters (below)",
            doc_type="list",
            json={
                "type": ["array", "null"],
                "items": {"type": "string", "pattern": _COMPARISON},
            },
        ),
        Field(
            "outcome_constraints",
            "custom",
            "measured quantities that must meet a bound (below)",
            doc_type="list",
            json={
                "type": ["array", "null"],
                "items": {
                    "anyOf": [
                        {"type": "string", "pattern": _COMPARISON},
                        {"$ref": "#/$defs/outcome_constraints"},
                    ]
                },
            },
        ),
        Field(
            "pool",
            "section",
            "a finite set of candidates to choose from (below)",
            section="pool",
        ),
        Field(
            "fidelities",
            "section",
            "levels of measurement at different costs, and the one the objective is judged "
            "at (below)",
            section="fidelities",
        ),
        Field(
            "prior",
            "list",
            "earlier campaigns' databases or CSVs of measurements: related tasks the model "
            "learns from, not trials of this campaign (below)",
            section="prior",
        ),
    ),
    # every parameter has name and type, then the fields of its type
    "space": (
        Field("name", "name", "the key the parameter's value has in a trial", default=REQUIRED),
        Field(
            "type",
            "choice",
            "what kind of parameter (table above)",
            default=REQUIRED,
            choices=PARAM_TYPES,
        ),
        Field("description", "any", "for people; not checked", doc_type="text"),
        Field(
            "bounds",
            "custom",
            "`range`, `integer`: lowest and highest value (whole numbers for `integer`)",
            default=REQUIRED,
            types=("range", "integer"),
            doc_type="`[low, high]`",
            json=_PAIR,
        ),
        Field(
            "log",
            "boolean",
            "`range`: search on a log scale (needs `low > 0`)",
            default=False,
            types=("range",),
        ),
        Field("unit", "text", "`range`, `integer`: shown in summaries", types=("range", "integer")),
        Field(
            "values",
            "custom",
            "`choice`: at least two distinct texts or numbers",
            default=REQUIRED,
            types=("choice",),
            doc_type="list",
            json={"type": "array", "minItems": 2, "items": _SCALAR},
        ),
        Field(
            "value",
            "custom",
            "`fixed`: the value every trial has",
            default=REQUIRED,
            types=("fixed",),
            doc_type="text or number",
            json=_SCALAR,
        ),
        Field(
            "elements",
            "custom",
            "`composition`: at least two distinct chemical element symbols",
            default=REQUIRED,
            types=("composition",),
            doc_type="list",
            json={"type": "array", "minItems": 2, "items": {"enum": sorted(ELEMENT_SYMBOLS)}},
        ),
        Field(
            "bounds",
            "custom",
            "`composition`: bounds of some elements' fractions, within [0, 1]",
            types=("composition",),
            doc_type="`{El: [lo, hi]}`",
            doc_default="`[0, 1]` each",
            json={"type": ["object", "null"], "additionalProperties": _PAIR},
        ),
    ),
    "objectives": (
        Field("name", "name", "the key drivers report the outcome under", default=REQUIRED),
        Field(
            "goal",
            "choice",
            "which way is better",
            default=REQUIRED,
            choices=("minimize", "maximize"),
        ),
        Field(
            "threshold",
            "number",
            "with several objectives: the worst value still worth having (the hypervolume "
            "reference point); default: just beyond the worst observed",
        ),
        Field("unit", "text", "shown in summaries"),
        Field("description", "any", "for people; not checked", doc_type="text"),
    ),
    "outcome_constraints": (
        Field("name", "name", "the measured quantity drivers report", default=REQUIRED),
        Field("op", "choice", "the comparison", default=REQUIRED, choices=("<=", ">=")),
        Field("bound", "number", "the value to meet", default=REQUIRED),
        Field("unit", "text", "shown in summaries"),
        Field("description", "any", "for people; not checked", doc_type="text"),
    ),
    "budget": (
        Field(
            "trials",
            "integer",
            "trials to **complete**; `loopctl start/resume --trials N` overrides it",
            default=REQUIRED,
            low=1,
        ),
        Field(
            "wall_time",
            "number",
            "stop when the controller has run this long",
            positive=True,
            doc_type="seconds",
        ),
        Field(
            "stop_at",
            "number",
            "stop as soon as the best observed value of the first objective is at least this good",
        ),
        Field(
            "max_failed",
            "integer",
            "stop after this many trials failed for good",
            low=0,
            doc_default="`trials`",
        ),
        Field(
            "cost",
            "number",
            "with `fidelities`: the cost the campaign may spend; no trial is sent whose cost "
            "would take the spent cost beyond it",
            positive=True,
        ),
    ),
    "execution": (
        Field(
            "trial_timeout",
            "custom",
            "a running trial older than this is cancelled and re-queued (retry policy); see below",
            default="auto",
            doc_type="seconds, `auto` or `none`",
            json={
                "anyOf": [
                    {"$ref": "#/$defs/positive_number"},
                    {"enum": ["auto", "none", None]},
                ]
            },
        ),
        Field(
            "max_in_flight",
            "integer",
            "trials proposed or running at once",
            default=2,
            low=1,
        ),
        Field(
            "ahead",
            "integer",
            "candidates kept ready beyond `max_in_flight` while trials run, proposed with the "
            "running trials as pending points, so a driver that frees up gets one at once "
            "instead of waiting for the model (0: propose only for free slots; not under manual "
            "`approval`)",
            default=2,
            low=0,
        ),
        Field(
            "refresh_after",
            "integer",
            "a ready model-made candidate is withdrawn and proposed again once this many "
            "results have arrived since it was proposed (0: never)",
            default=4,
            low=0,
            doc_type="results",
        ),
        Field(
            "retries",
            "integer",
            "extra attempts after a retryable failure, a vanished driver or a timeout",
            default=2,
            low=0,
        ),
        Field(
            "heartbeat_interval",
            "number",
            "how often drivers send HEARTBEAT",
            default=1.0,
            positive=True,
            doc_type="seconds",
        ),
        Field(
            "heartbeat_timeout",
            "number",
            "a driver silent this long is lost; its trials are re-queued (longer than "
            "`heartbeat_interval`)",
            default=10.0,
            positive=True,
            doc_type="seconds",
        ),
        Field(
            "approval",
            "choice",
            "`manual`: proposals wait as `proposed` until `loopctl approve` (or `reject`)",
            default="auto",
            choices=("auto", "manual"),
        ),
        Field(
            "max_drivers",
            "integer",
            "drivers connected at once; a HELLO beyond it is refused (`too_many_drivers`) "
            "and nothing is recorded for it",
            default=128,
            low=1,
        ),
    ),
    "strategy": (
        Field(
            "method",
            "choice",
            "what proposes (table below)",
            default="auto",
            choices=STRATEGY_METHODS,
        ),
        Field(
            "initial_trials",
            "integer",
            "trials of the initial design (centre, then Sobol) before the first model",
            low=1,
            doc_default="see below",
        ),
        Field(
            "options",
            "section",
            "settings of the model-based methods (table below)",
            section="strategy.options",
            doc_default="`{}`",
        ),
    ),
    # the order of STRATEGY_OPTIONS below, which the reader checks them in
    "strategy.options": (
        Field(
            "acquisition",
            "choice",
            "one objective: `ucb` (upper confidence bound) or `ei` (log-noisy expected "
            "improvement)",
            choices=("ei", "ucb"),
            doc_default="`ucb` over a pool, `ei` otherwise",
        ),
        Field(
            "surrogate",
            "choice",
            "one objective: the model (table below)",
            choices=("auto", "gp", "gp-matern", "forest"),
            doc_default="`gp`",
        ),
        Field(
            "beta",
            "number",
            "`ucb` and `nsga2`: mean + sqrt(beta) standard deviations (1 was chosen by backtests)",
            positive=True,
            doc_default="`1`",
        ),
        Field(
            "center_point",
            "boolean",
            "the first trial of a new campaign is the centre of the space",
            default=True,
        ),
        Field(
            "learn_failures",
            "boolean",
            "model the probability of success from failed trials",
            default=True,
        ),
        Field(
            "warp_outcomes",
            "boolean",
            "fit each objective's GP on a Yeo-Johnson transform of it; `auto`: only when "
            "that GP predicts each trial left out better than the plain one",
            choices=("auto",),
            doc_default="`auto` with EI, `true` with UCB",
        ),
        Field(
            "select_by",
            "choice",
            "`surrogate: auto`: choose the model by `loo` (leave-one-out) or `prequential` "
            "(one-step-ahead over the last trials) log density",
            choices=("loo", "prequential"),
            doc_default="`loo`",
        ),
        Field(
            "prior_mean",
            "choice",
            "the GP's prior mean: a `fitted` constant, or the `average` of the observations",
            choices=("fitted", "average"),
            doc_default="`fitted`",
        ),
        Field(
            "winsorize",
            "boolean",
            "clip each objective's bad tail first, as Ax does (for comparisons with Ax)",
            default=False,
        ),
        Field(
            "prior_gate",
            "boolean",
            "with a `prior`: use it only while it predicts this campaign's trials (each left "
            "out) at least as well as the plain GP does; `false`: always",
            default=True,
        ),
        Field(
            "nsga2_bound",
            "choice",
            "`nsga2`: optimise an optimistic bound (`ucb`) or the posterior `mean`",
            choices=("ucb", "mean"),
            doc_default="`ucb`",
        ),
    ),
    "oracle": (
        Field("kind", "choice", "what to compute", default=REQUIRED, choices=ORACLE_KINDS),
        Field(
            "function",
            "text",
            "`branin`, `hartmann6`, `ackley`, `sphere`, `rosenbrock`; inputs are the numeric "
            "parameters in file order",
            doc_type="name",
            doc_default="required for `function`",
        ),
        Field(
            "table",
            "text",
            "CSV with columns named after the parameters and objectives; relative to the "
            "campaign file",
            doc_type="path",
            doc_default="required for `table`",
        ),
        Field(
            "latency",
            "number",
            "added to each evaluation",
            default=0.0,
            low=0.0,
            doc_type="seconds",
        ),
        Field(
            "noise",
            "number",
            "Gaussian noise added to each outcome",
            default=0.0,
            low=0.0,
            doc_type="SD",
        ),
        Field(
            "fail_rate",
            "number",
            'evaluations that fail (half "compute node lost", retryable; half "SCF did not '
            'converge", not)',
            default=0.0,
            low=0.0,
            high=1.0,
            doc_type="probability",
        ),
        Field(
            "options",
            "mapping",
            "`emt`: `supercell` (1-4, default 2 → 32 atoms), `relax` (default true); "
            "`chgnet`: `model`, `steps`, `fmax`, `supercell`, `lattice`, `hull_formulas`, "
            "`hull_entries` (below); "
            "`table`: `nearest` (default true: the nearest row when no row matches exactly)",
            doc_default="`{}`",
        ),
    ),
    "drivers": (
        Field(
            "spawn",
            "integer",
            "oracle drivers `loopctl start` starts itself (`--spawn-drivers` overrides)",
            default=0,
            low=0,
        ),
        Field(
            "kind", "choice", "the kind of driver spawned", default="oracle", choices=("oracle",)
        ),
    ),
    "security": (
        Field(
            "curve_secret_key",
            "text",
            "the controller's secret key file (`loopctl keys generate`)",
            doc_type="path",
        ),
        Field(
            "authorized_keys",
            "text",
            "the folder of the public keys of the drivers allowed to connect",
            doc_type="path",
        ),
    ),
    "fidelities": (
        Field(
            "levels",
            "list",
            "the levels, each with its name and its cost per trial (at least two)",
            default=REQUIRED,
            section="fidelities.levels",
        ),
        Field(
            "target",
            "name",
            "the level the objective is judged at (one of the levels' names)",
            default=REQUIRED,
        ),
    ),
    "fidelities.levels": (
        Field("name", "name", "what drivers name the level in `--fidelity`", default=REQUIRED),
        Field(
            "cost",
            "number",
            "the cost of one trial at this level, in any unit (the budget's `cost` is in it)",
            default=REQUIRED,
            positive=True,
        ),
    ),
    "prior": (
        Field(
            "file",
            "text",
            "an earlier campaign's database (`.db`) or a CSV with a header: a column per "
            "parameter and the objective; relative to this file",
            doc_type="path",
        ),
        Field(
            "columns",
            "custom",
            "parameter or objective -> column (CSV) or outcome (database), where the names differ",
            doc_type="mapping",
            doc_default="`{}`",
            json={"type": ["object", "null"], "additionalProperties": {"type": "string"}},
        ),
        Field(
            "rows",
            "custom",
            "the measurements written out, parameter values and the objective each (instead "
            "of `file`); the database keeps a file's rows here",
            doc_type="list",
            json={"type": ["array", "null"], "minItems": 1, "items": {"type": "object"}},
        ),
        Field(
            "sha256",
            "text",
            "the file's sha256; given, the file must still have it (loopctl records it)",
        ),
        Field(
            "campaign",
            "text",
            "a database's campaign id (loopctl records it)",
        ),
        Field(
            "dropped",
            "custom",
            "rows left out when the file was read, by reason (loopctl records it)",
            doc_type="mapping",
            json={"type": ["object", "null"], "additionalProperties": {"type": "integer"}},
        ),
    ),
    "pool": (
        Field(
            "file",
            "text",
            "a CSV of candidates with a header; relative to this file",
            doc_type="path",
        ),
        Field(
            "columns",
            "custom",
            "parameter -> CSV column, where a column is not named like its parameter",
            doc_type="mapping",
            doc_default="`{}`",
            json={"type": ["object", "null"], "additionalProperties": {"type": "string"}},
        ),
        Field(
            "rows",
            "custom",
            "the candidates written out, a mapping of parameter values each (instead of `file`)",
            doc_type="list",
            json={"type": ["array", "null"], "minItems": 1, "items": {"type": "object"}},
        ),
    ),
}


def fields(section: str, ptype: str | None = None) -> tuple[Field, ...]:
    """The fields of a section; for ``space``, those a parameter of type ``ptype`` has."""
    out = SECTIONS[section]
    if ptype is None:
        return out
    return tuple(f for f in out if not f.types or ptype in f.types)


def keys(section: str, ptype: str | None = None) -> set[str]:
    """The keys a mapping of the section may have; any other is an unknown field."""
    return {f.name for f in fields(section, ptype)}


def field_of(section: str, name: str, ptype: str | None = None) -> Field:
    for f in fields(section, ptype):
        if f.name == name:
            return f
    raise KeyError(f"{section}.{name}")


# strategy.options as bench/regret.py parses them: a choice of strings, a flag, a number
STRATEGY_OPTIONS: dict[str, tuple[str, ...] | type] = {
    f.name: f.choices if f.kind == "choice" else bool if f.kind == "boolean" else float
    for f in SECTIONS["strategy.options"]
}
