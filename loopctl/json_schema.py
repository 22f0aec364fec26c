"""The campaign file as a JSON Schema (draft 2020-12), built from loopctl.schema's table.

For editors and other tools: with it, an editor completes field names and flags unknown
or mistyped fields as the file is written. It checks what the table says (keys, types,
allowed values, bounds of single numbers); the checks across fields (a range's lower bound
below its upper one, a composition's bounds admitting a composition, constraints naming
parameters that exist) are `loopctl validate`'s alone.
"""

from __future__ import annotations

from typing import Any

from loopctl.schema import NAME_RE, PARAM_TYPES, Field, fields

DRAFT = "https://json-schema.org/draft/2020-12/schema"
# what Python's float() reads as a finite number, as numeric fields accept text too
FLOAT_TEXT = r"^\s*[+-]?(\d(_?\d)*(\.(\d(_?\d)*)?)?|\.\d(_?\d)*)([eE][+-]?\d(_?\d)*)?\s*$"
_NULL = {"type": "null"}


def json_schema() -> dict[str, Any]:
    """The schema of a campaign file; ``json.dumps`` it as it is."""
    number = {"anyOf": [{"type": "number"}, {"type": "string", "pattern": FLOAT_TEXT}]}
    return {
        "$schema": DRAFT,
        "title": "loopctl campaign file",
        "description": "A campaign: what can be varied, what to optimise, how many "
        "experiments may be run (docs/campaign-file.md).",
        **_object("top"),
        "$defs": {
            "number": number,
            "positive_number": {
                "anyOf": [
                    {"type": "number", "exclusiveMinimum": 0},
                    {"type": "string", "pattern": FLOAT_TEXT},
                ]
            },
            "pair": {
                "type": "array",
                "minItems": 2,
                "maxItems": 2,
                "prefixItems": [{"$ref": "#/$defs/number"}, {"$ref": "#/$defs/number"}],
                "items": False,
            },
            "parameter": {"oneOf": [_object("space", ptype) for ptype in PARAM_TYPES]},
            "strategy": _object("strategy"),
            "outcome_constraints": _object("outcome_constraints"),
        },
    }


def _object(section: str, ptype: str | None = None) -> dict[str, Any]:
    """A mapping with the fields of ``section`` and no others."""
    props: dict[str, Any] = {}
    for f in fields(section, ptype):
        props[f.name] = {"description": f.meaning, **_field(f)}
        if not f.required and f.default is not None:
            props[f.name]["default"] = f.default
    if ptype is not None:
        props["type"] = {"description": props["type"]["description"], "const": ptype}
    out: dict[str, Any] = {
        "type": "object",
        "properties": props,
        "required": [f.name for f in fields(section, ptype) if f.required],
        "additionalProperties": False,
    }
    if section == "pool":  # where the candidates come from
        out["anyOf"] = [{"required": ["file"]}, {"required": ["rows"]}]
    return out


def _field(f: Field) -> dict[str, Any]:
    """The schema of one field's value; null stands for the default where the reader
    takes it so (an absent field and ``key:`` with no value read the same)."""
    if f.json is not None:
        return dict(f.json)
    if f.kind == "any":
        return {}
    s: dict[str, Any]
    if f.kind == "name":
        s = {"type": "string", "pattern": NAME_RE.pattern}
    elif f.kind == "text":
        s = {"type": "string", "pattern": r"\S"}
    elif f.kind == "choice":
        s = {"enum": list(f.choices)}
    elif f.kind == "integer":
        s = {"type": "integer"} | ({} if f.low is None else {"minimum": f.low})
    elif f.kind == "number":
        bounds: dict[str, float] = {"exclusiveMinimum": 0} if f.positive else {}
        bounds |= {} if f.low is None else {"minimum": f.low}
        bounds |= {} if f.high is None else {"maximum": f.high}
        s = (
            {"$ref": "#/$defs/number"}
            if not bounds
            else {
                "anyOf": [{"type": "number", **bounds}, {"type": "string", "pattern": FLOAT_TEXT}]
            }
        )
    elif f.kind == "boolean":
        if f.choices:
            return {"anyOf": [{"type": "boolean"}, {"enum": list(f.choices)}]}
        return {"type": "boolean"}  # `log:` with no value is an error, not the default
    elif f.kind == "mapping":
        s = {"type": "object"}
    elif f.kind == "section" and f.section is not None:
        s = _object(f.section)
    elif f.kind == "list" and f.section is not None:
        s = {"type": "array", "minItems": 1, "items": _object(f.section)}
    else:
        raise ValueError(f"{f.name}: kind {f.kind} has no JSON Schema")
    # a required integer given as null reads as its fallback (`budget: {trials: }` is 1 trial)
    nullable = not f.required or f.kind == "integer"
    return {"anyOf": [s, _NULL]} if nullable else s
