"""Campaign file (YAML) -> validated, immutable objects: the one place to import them from.

The work is split by job: loopctl.spec_types (the frozen dataclasses), loopctl.schema (the
table of every field: keys, types, defaults, meanings), loopctl.spec_reader (reading and
validating a file, every problem named by its field's path), loopctl.expressions (the
constraint expressions) and loopctl.pool_file (a pool's candidates). Importing from here keeps
callers independent of that split.
"""

from __future__ import annotations

from loopctl.schema import (
    ELEMENT_SYMBOLS,
    EMT_ELEMENTS,
    NAME_RE,
    ORACLE_KINDS,
    PARAM_TYPES,
    STRATEGY_METHODS,
    STRATEGY_OPTIONS,
)
from loopctl.spec_reader import load_spec, parse_spec, parse_spec_text
from loopctl.spec_types import (
    AUTO_TIMEOUT_FACTOR,
    AUTO_TIMEOUT_FIRST,
    AUTO_TIMEOUT_FLOOR,
    Budget,
    ChoiceParam,
    CompositionParam,
    DriversSpec,
    Execution,
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
    spec_hash,
)

__all__ = [
    "AUTO_TIMEOUT_FACTOR",
    "AUTO_TIMEOUT_FIRST",
    "AUTO_TIMEOUT_FLOOR",
    "ELEMENT_SYMBOLS",
    "EMT_ELEMENTS",
    "NAME_RE",
    "ORACLE_KINDS",
    "PARAM_TYPES",
    "STRATEGY_METHODS",
    "STRATEGY_OPTIONS",
    "Budget",
    "ChoiceParam",
    "CompositionParam",
    "DriversSpec",
    "Execution",
    "FixedParam",
    "FormulaParam",
    "IntegerParam",
    "LinearConstraint",
    "Objective",
    "OracleSpec",
    "OutcomeConstraint",
    "Parameter",
    "PoolSpec",
    "PriorSource",
    "RangeParam",
    "SecuritySpec",
    "Spec",
    "StrategySpec",
    "StructureParam",
    "load_spec",
    "parse_spec",
    "parse_spec_text",
    "spec_hash",
]
