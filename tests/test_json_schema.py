"""`loopctl schema`: the JSON Schema made from loopctl.schema's table accepts every campaign
the loader accepts (the repo's, and ones using every field of the table) and rejects files
with mistakes the table describes, as the loader does.

The `jsonschema` package is not among the environment's dependencies, so the schema is
checked by a small validator of the keywords it uses; the test fails if it starts using
one that validator does not know, rather than ignoring it."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from loopctl.errors import SpecError
from loopctl.json_schema import json_schema
from loopctl.schema import SECTIONS
from loopctl.spec import parse_spec, parse_spec_text
from tests.conftest import CAMPAIGNS, ROOT
from tests.inprocess import cli

SCHEMA = json_schema()
FILES = [*sorted(CAMPAIGNS.glob("*.yaml")), ROOT / "loopctl" / "example-campaign.yaml"]

# --------------------------------------------------------------- a validator of a subset

ANNOTATIONS = {"$schema", "title", "description", "default", "$defs"}
TYPES: dict[str, Any] = {
    "object": lambda v: isinstance(v, Mapping),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
}


def errors(s: Any, v: Any, at: str = "") -> Iterator[str]:
    """Where ``v`` breaks schema ``s``; nothing when it conforms."""
    if s is True or s == {}:
        return
    if s is False:
        yield f"{at}: not allowed"
        return
    if "$ref" in s:
        target = SCHEMA
        for part in s["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        yield from errors(target, v, at)
    if "type" in s:
        kinds = [s["type"]] if isinstance(s["type"], str) else s["type"]
        if not any(TYPES[k](v) for k in kinds):
            yield f"{at}: {v!r} is not {s['type']}"
            return
    if "enum" in s and v not in s["enum"]:
        yield f"{at}: {v!r} not in {s['enum']}"
    if "const" in s and v != s["const"]:
        yield f"{at}: {v!r} is not {s['const']!r}"
    if isinstance(v, str) and "pattern" in s and not re.search(s["pattern"], v):
        yield f"{at}: {v!r} does not match {s['pattern']}"
    if TYPES["number"](v):
        if "minimum" in s and v < s["minimum"]:
            yield f"{at}: {v} < {s['minimum']}"
        if "maximum" in s and v > s["maximum"]:
            yield f"{at}: {v} > {s['maximum']}"
        if "exclusiveMinimum" in s and v <= s["exclusiveMinimum"]:
            yield f"{at}: {v} <= {s['exclusiveMinimum']}"
    if isinstance(v, list):
        if len(v) < s.get("minItems", 0) or len(v) > s.get("maxItems", len(v)):
            yield f"{at}: {len(v)} items"
        prefix = s.get("prefixItems", [])
        for i, x in enumerate(v):
            sub = prefix[i] if i < len(prefix) else s.get("items", True)
            yield from errors(sub, x, f"{at}[{i}]")
    if isinstance(v, Mapping):
        for key in s.get("required", []):
            if key not in v:
                yield f"{at}.{key}: required"
        props = s.get("properties", {})
        for key, x in v.items():
            sub = props.get(key, s.get("additionalProperties", True))
            yield from errors(sub, x, f"{at}.{key}")
    if "anyOf" in s and all(list(errors(sub, v, at)) for sub in s["anyOf"]):
        yield f"{at}: matches none of anyOf"
    if "oneOf" in s and sum(not list(errors(sub, v, at)) for sub in s["oneOf"]) != 1:
        yield f"{at}: matches not exactly one of oneOf"


KNOWN = set(ANNOTATIONS) | {
    "$ref", "type", "enum", "const", "pattern", "minimum", "maximum", "exclusiveMinimum",
    "minItems", "maxItems", "prefixItems", "items", "required", "properties",
    "additionalProperties", "anyOf", "oneOf",
}  # fmt: skip


def keywords(s: Any) -> Iterator[str]:
    if isinstance(s, Mapping):
        for key, sub in s.items():
            yield key
            if key in ("properties", "$defs"):
                for x in sub.values():
                    yield from keywords(x)
            elif key not in ("enum", "const", "default", "required"):
                yield from keywords(sub)
    elif isinstance(s, list):
        for x in s:
            yield from keywords(x)


def test_schema_uses_only_keywords_the_check_knows() -> None:
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert set(keywords(SCHEMA)) <= KNOWN, set(keywords(SCHEMA)) - KNOWN


# ---------------------------------------------------------------- campaigns it accepts


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_campaign_of_the_repo_matches(path: Path) -> None:
    data = yaml.safe_load(path.read_text())
    parse_spec_text(path.read_text(), source=str(path))  # the loader accepts it too
    assert list(errors(SCHEMA, data)) == []


# between them, every field of the table (test_the_two_use_every_field checks it)
EVERY_FIELD = [
    """
name: every-field
description: a campaign that uses every field
seed: 3
space:
  - {name: a, type: range, bounds: [0, 1], log: false, unit: K, description: heat}
  - {name: b, type: integer, bounds: [1, 5], unit: layers}
  - {name: c, type: choice, values: [x, y, 3]}
  - {name: f, type: fixed, value: 1.5}
  - {name: comp, type: composition, elements: [Cu, Pd, Ni], bounds: {Cu: [0.1, "0.9"]}}
objectives:
  - {name: y, goal: minimize, threshold: 3, unit: eV, description: energy}
  - {name: z, goal: maximize}
constraints: ["a + 2*b <= 9", "comp.Cu - comp.Pd >= -0.5"]
outcome_constraints:
  - "y <= 0.5"
  - {name: z, op: ">=", bound: 1e-3, unit: EUR, description: money}
budget: {trials: 10, wall_time: 3600, stop_at: 0.5, max_failed: 3}
execution: {trial_timeout: none, max_in_flight: 3, ahead: 1, refresh_after: 3, retries: 1,
            heartbeat_interval: 0.5, heartbeat_timeout: 5, approval: manual, max_drivers: 4}
strategy:
  method: mobo
  initial_trials: 4
  options: {acquisition: ucb, surrogate: forest, beta: 2, center_point: false,
            learn_failures: true, warp_outcomes: false, winsorize: true, nsga2_bound: mean,
            prior_mean: average, select_by: prequential, prior_gate: false}
oracle: {kind: function, function: branin, table: t.csv, latency: 0.1, noise: 0.01,
         fail_rate: 0.2, options: {nearest: true}}
drivers: {spawn: 2, kind: oracle}
security: {curve_secret_key: a.key, authorized_keys: keys}
robot: {url: "http://x", job: {a: a}}
""",
    """
name: pool
space:
  - {name: compound, type: formula}
  - {name: t, type: range, bounds: [0, 10]}
objectives: [{name: y, goal: maximize}]
pool:
  file: not-read-when-rows-are-given.csv
  columns: {t: temperature}
  rows:
    - {compound: NaCl, temperature: 1}
    - {compound: KCl, temperature: 2}
budget: {trials: 2}
strategy: sobol
""",
    """
name: fidelities
space:
  - {name: x, type: range, bounds: [0, 1]}
objectives: [{name: y, goal: minimize}]
fidelities:
  levels: [{name: emt, cost: 1}, {name: chgnet, cost: 20}]
  target: chgnet
budget: {trials: 10, cost: 100}
""",
    """
name: prior
space:
  - {name: x, type: range, bounds: [0, 1]}
objectives: [{name: y, goal: minimize}]
budget: {trials: 4}
prior:
  - file: not-read-when-rows-are-given.csv
    columns: {x: position}
    sha256: 0123abcd
    campaign: 0123abcd
    dropped: {"outside this campaign's space": 2}
    rows:
      - {position: 0.2, y: 1.5}
      - {position: 0.7, y: 0.5}
""",
]


def used_fields(data: Mapping[str, Any]) -> set[tuple[str, str]]:
    """(section, field) of every key the campaign sets."""
    used = {("top", k) for k in data}
    for section in ("budget", "execution", "strategy", "oracle", "drivers", "security", "pool"):
        if isinstance(data.get(section), Mapping):
            used |= {(section, k) for k in data[section]}
    if isinstance(data.get("strategy"), Mapping):
        used |= {("strategy.options", k) for k in data["strategy"].get("options", {})}
    if isinstance(data.get("fidelities"), Mapping):
        used |= {("fidelities", k) for k in data["fidelities"]}
        for item in data["fidelities"].get("levels", []):
            used |= {("fidelities.levels", k) for k in item}
    for section in ("space", "objectives", "outcome_constraints", "prior"):
        for item in data.get(section, []):
            if isinstance(item, Mapping):
                used |= {(section, k) for k in item}
    return used


def test_the_two_use_every_field() -> None:
    table = {(section, f.name) for section, fs in SECTIONS.items() for f in fs}
    used = set().union(*(used_fields(yaml.safe_load(text)) for text in EVERY_FIELD))
    assert used == table


@pytest.mark.parametrize("text", EVERY_FIELD, ids=["every-field", "pool", "fidelities", "prior"])
def test_campaigns_using_every_field_load_and_match(text: str) -> None:
    parse_spec_text(text)
    assert list(errors(SCHEMA, yaml.safe_load(text))) == []


# ----------------------------------------------------------------- files it rejects

BASE = yaml.safe_load((CAMPAIGNS / "branin.yaml").read_text())

# (section, key, value): set in a copy of campaigns/branin.yaml; None as key drops section
BAD = [
    ("top", "bugdet", {"trials": 3}),  # unknown field
    ("top", "seed", -1),
    ("top", "name", "1st"),
    ("top", "budget", None),  # required
    ("top", "space", []),
    ("top", "strategy", "bayes"),
    ("objectives", "goal", "minimise"),
    ("objectives", "weight", 2),
    ("space", "type", "ranges"),
    ("space", "bounds", [0]),
    ("space", "bounds", ["low", 1]),
    ("space", "log", "yes"),
    ("budget", "trials", 0),
    ("budget", "trials", "ten"),
    ("execution", "max_in_flight", 0),
    ("execution", "ahead", -1),
    ("execution", "heartbeat_interval", -1),
    ("execution", "trial_timeout", "soon"),
    ("execution", "approval", "maybe"),
    ("strategy.options", "acquisition", "pi"),
    ("strategy.options", "learn_falures", True),
    ("oracle", "fail_rate", 2),
    ("oracle", "kind", "dft"),
    ("pool", "columns", {"x1": 3}),
]


def bad_campaign(section: str, key: str, value: Any) -> dict[str, Any]:
    data = json.loads(json.dumps(BASE))
    if section == "top":
        data[key] = value
    elif section in ("objectives", "space"):
        data[section][0][key] = value
    elif section == "strategy.options":
        data["strategy"] = {"options": {key: value}}
    elif section == "pool":
        data["pool"] = {"rows": [{"x1": 0, "x2": 0}, {"x1": 1, "x2": 1}], key: value}
        del data["oracle"], data["drivers"]
    else:
        data.setdefault(section, {})[key] = value
    return data


@pytest.mark.parametrize("section, key, value", BAD, ids=[f"{s}.{k}" for s, k, _ in BAD])
def test_known_bad_files_are_rejected_by_schema_and_loader(
    section: str, key: str, value: Any
) -> None:
    data = bad_campaign(section, key, value)
    assert list(errors(SCHEMA, data)), "the schema accepts it"
    with pytest.raises(SpecError):
        parse_spec(data)


def test_the_check_is_not_vacuous() -> None:
    """The base of the bad files is good, so each bad file is bad for its one change."""
    assert list(errors(SCHEMA, BASE)) == []
    parse_spec(BASE)


def test_loopctl_schema_prints_it(capsys: pytest.CaptureFixture[str]) -> None:
    out = cli(capsys, "schema").stdout
    assert json.loads(out) == SCHEMA
    assert out.startswith('{\n  "$schema"')  # indented, for people and diffs
