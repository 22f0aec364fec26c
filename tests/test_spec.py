"""Campaign files: every kind of mistake is reported with the field it is in."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from loopctl.errors import SpecError
from loopctl.spec import ELEMENT_SYMBOLS, load_spec, parse_spec_text
from tests.conftest import CAMPAIGNS, loopctl, scaled

GOOD = """
name: t
seed: 3
space:
  - {name: a, type: range, bounds: [0, 1]}
  - {name: b, type: integer, bounds: [1, 5]}
  - {name: c, type: choice, values: [x, y]}
  - {name: comp, type: composition, elements: [Cu, Pd], bounds: {Cu: [0.1, 0.9]}}
objectives:
  - {name: y, goal: minimize}
budget: {trials: 10}
"""

# (mutation of GOOD, text the message must contain)
BAD = [
    (
        "space:\n  - {name: a, type: range, bounds: [5, 1]}",
        "space[0].bounds: lower bound 5 is above upper bound 1",
    ),
    (
        "space:\n  - {name: a, type: ranges, bounds: [0, 1]}",
        "space[0].type: 'ranges' is not one of",
    ),
    ("space:\n  - {name: a, type: range}", "space[0].bounds: must be a list of two numbers"),
    ("space:\n  - {name: 1a, type: range, bounds: [0, 1]}", "space[0].name: '1a' is not a valid"),
    (
        "space:\n  - {name: a, type: range, bounds: [0, 1], log: true}",
        "space[0].bounds: log scale needs a lower bound above 0",
    ),
    (
        "space:\n  - {name: a, type: choice, values: [x]}",
        "space[0].values: must be a list of at least two",
    ),
    (
        "space:\n  - {name: c, type: composition, elements: [Cu, Xx]}",
        "space[0].elements[1]: 'Xx' is not a chemical element",
    ),
    (
        "space:\n  - {name: c, type: composition, elements: [Cu, Pd], bounds: {Cu: [0, 0.2], "
        "Pd: [0, 0.3]}}",
        "space[0].bounds: no composition 'c' fits",
    ),
    (
        "space:\n  - {name: c, type: composition, elements: [Cu, Pd], bounds: {Au: [0, 1]}}",
        "space[0].bounds.Au: 'Au' is not one of the elements",
    ),
    ("objectives:\n  - {name: y, goal: minimise}", "objectives[0].goal: 'minimise' is not one of"),
    ("objectives: []", "objectives: must be a non-empty list"),
    ("budget: {trials: 0}", "budget.trials: must be at least 1"),
    ("budget: {trials: 2.5}", "budget.trials: must be a whole number"),
    ("budget: {}", "budget.trials: is required"),
    ("execution: {max_in_flight: 0}", "execution.max_in_flight: must be at least 1"),
    (
        "execution: {heartbeat_interval: 5, heartbeat_timeout: 2}",
        "execution.heartbeat_timeout: must be longer than heartbeat_interval",
    ),
    ("strategy: {method: magic}", "strategy.method: 'magic' is not one of"),
    (
        "strategy: {options: {learn_falures: false}}",
        "strategy.options.learn_falures: unknown field; expected one of",
    ),
    ("strategy: {options: {acquisition: pi}}", "strategy.options.acquisition: 'pi' is not one"),
    ("strategy: {options: {beta: 0}}", "strategy.options.beta: must be greater than 0"),
    (
        "strategy: {options: {warp_outcomes: maybe}}",
        "strategy.options.warp_outcomes: must be one of true, false",
    ),
    ("oracle: {kind: function}", "oracle.function: is required when kind is function"),
    (
        "space:\n  - {name: c, type: composition, elements: [Cu, Fe]}\noracle: {kind: emt}",
        "oracle.kind: EMT has no potential for Fe",
    ),
    (
        "space:\n  - {name: a, type: range, bounds: [0, 1]}\noracle: {kind: emt}",
        "oracle.kind: emt needs exactly one composition parameter",
    ),
    (
        "space:\n  - {name: a, type: range, bounds: [0, 1]}\noracle: {kind: chgnet}",
        "oracle.kind: chgnet needs exactly one composition parameter",
    ),
    ("bugdet: {trials: 3}", "bugdet: unknown field"),
    ("seed: -1", "seed: must be at least 0"),
    ("objectives:\n  - {name: a, goal: minimize}", "name 'a' is used more than once"),
    # what passes the fields' own checks must still fit the database
    (
        "space:\n  - {name: a, type: choice, values: [1, .nan]}",
        "space[0].values[1]: nan cannot be stored; write a finite number",
    ),
    ("robot: {speed: .inf}", "robot.speed: inf cannot be stored"),
    ("robot: {since: 2024-05-01}", "robot.since: date cannot be stored; quote it"),
]


def mutate(change: str) -> str:
    key = change.split(":", 1)[0]
    lines, out, skip = GOOD.strip().splitlines(), [], False
    for line in lines:
        if line.startswith(f"{key}:"):
            skip = True
            continue
        if skip and line.startswith("  "):
            continue
        skip = False
        out.append(line)
    return "\n".join(out) + "\n" + change + "\n"


def test_good_file_parses() -> None:
    spec = parse_spec_text(GOOD)
    assert [p.type for p in spec.space] == ["range", "integer", "choice", "composition"]
    assert spec.space[3].bounds == ((0.1, 0.9), (0.0, 1.0))  # type: ignore[union-attr]


@pytest.mark.parametrize("change,expected", BAD, ids=[b[1].split(":")[0] for b in BAD])
def test_bad_field_is_named(change: str, expected: str) -> None:
    with pytest.raises(SpecError) as err:
        parse_spec_text(mutate(change))
    assert expected in str(err.value), str(err.value)


def test_all_problems_reported_at_once() -> None:
    text = mutate("budget: {trials: 0}").replace("goal: minimize", "goal: up")
    with pytest.raises(SpecError) as err:
        parse_spec_text(text)
    assert len(err.value.problems) == 2


def test_errors_survive_a_process_boundary() -> None:
    """Benchmarks and workers pickle errors; the problems must come back as they were."""
    import pickle

    with pytest.raises(SpecError) as err:
        parse_spec_text(mutate("budget: {trials: 0}").replace("goal: minimize", "goal: up"))
    again = pickle.loads(pickle.dumps(err.value))
    assert again.problems == err.value.problems and str(again) == str(err.value)


def test_not_yaml_names_the_line() -> None:
    with pytest.raises(SpecError, match="line 2, column 6: not valid YAML"):
        parse_spec_text("name: t\n  bad: : x\n")


def test_shipped_campaigns_are_valid() -> None:
    for path in CAMPAIGNS.glob("*.yaml"):
        load_spec(path)


def test_validate_cli_exit_codes(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(mutate("space:\n  - {name: a, type: range, bounds: [5, 1]}"))
    r = loopctl("validate", str(bad), check=False)
    assert r.returncode == 1
    assert "space[0].bounds: lower bound 5 is above upper bound 1" in r.stderr
    ok = loopctl("validate", str(CAMPAIGNS / "alloy-mixing.yaml"))
    assert "is valid" in ok.stdout and "Cu" in ok.stdout
    assert "then one objective: GP + log-noisy EI" in ok.stdout
    robot = loopctl("validate", str(CAMPAIGNS / "thin-film-robot.yaml"))
    assert "then 2 objectives: GPs + log-noisy EHVI" in robot.stdout


def test_init_writes_a_valid_commented_file(tmp_path: Path) -> None:
    target = tmp_path / "new.yaml"
    loopctl("init", str(target))
    assert "#" in target.read_text()
    load_spec(target)
    again = loopctl("init", str(target), check=False)
    assert again.returncode == 1 and "--force" in again.stderr


LOG_RANGE = """
name: t
space:
  - {{name: rate, type: range, bounds: [{low}, 1e-1], log: true}}
  - {{name: dose, type: choice, values: [1e-3, 1E-2]}}
objectives:
  - {{name: y, goal: minimize, threshold: 1e3}}
budget: {{trials: 10, stop_at: -2.5E+2}}
execution: {{trial_timeout: 1e2}}
oracle: {{kind: function, function: sphere, latency: 2e-3}}
strategy: {{options: {{beta: 2e0}}}}
"""


SPELLINGS = ["1e-5", "1E-5", "1.e-5", "1.0e-5", "+1e-5", ".1e-4", "0.00001", "1_0e-6"]


@pytest.mark.parametrize("low", [*SPELLINGS, "'1e-5'", '" 1e-5 "'])
def test_every_float_spelling_is_a_number(low: str) -> None:
    """PyYAML reads 1e-5 as text (YAML 1.1 floats need a dot and a signed exponent)."""
    spec = parse_spec_text(LOG_RANGE.format(low=low))
    assert spec.space[0].low == pytest.approx(1e-5, rel=1e-12)  # type: ignore[union-attr]
    assert spec.space[0].high == 0.1  # type: ignore[union-attr]
    assert spec.space[1].values == (0.001, 0.01)  # type: ignore[union-attr]
    assert spec.objectives[0].threshold == 1000.0 and spec.budget.stop_at == -250.0
    assert spec.execution.trial_timeout == 100.0 and spec.strategy.options["beta"] == 2.0
    assert spec.oracle is not None and spec.oracle.latency == 0.002


@pytest.mark.parametrize(
    "low,shown",
    [
        ("nan", "'nan'"),
        ("'-inf'", "'-inf'"),
        ("Infinity", "'Infinity'"),
        (".nan", "nan"),
        ("-.inf", "-inf"),
        ("1e999", "inf"),
    ],
)
def test_not_a_finite_number_names_the_field(low: str, shown: str) -> None:
    with pytest.raises(SpecError) as err:
        parse_spec_text(LOG_RANGE.format(low=low))
    assert err.value.problems == [f"space[0].bounds[0]: must be a finite number, got {shown}"]


@pytest.mark.parametrize("low", ["abc", "1e", "'1e-5 m'", "1e-5e2"])
def test_text_that_float_does_not_read_is_not_a_number(low: str) -> None:
    with pytest.raises(SpecError) as err:
        parse_spec_text(LOG_RANGE.format(low=low))
    assert "space[0].bounds[0]: must be a number, got the text" in str(err.value)


@pytest.mark.parametrize(
    "text,expect",
    [
        (  # the 953-byte bomb, in kind: 9 levels of 9 aliases, 9**9 strings
            "name: x\noracle:\n  options:\n    a: &a [l, l, l, l, l, l, l, l, l]\n"
            + "".join(
                f"    {c}: &{c} [{', '.join([f'*{p}'] * 9)}]\n"
                for p, c in zip("abcdefgh", "bcdefghi", strict=True)
            ),
            "expands to more than 1,000,000 values",
        ),
        ("name: x\noptions: " + "[" * 5000 + "]" * 5000 + "\n", "nested more than 64 levels"),
        ("name: x\na: &a [1, *a]\n", "refers to a value that contains it"),
        ("name: x\noptions: '" + "x" * (5 * 1024 * 1024) + "'\n", "more than the 4,194,304"),
    ],
    ids=["alias-bomb", "deep", "self-reference", "too-big"],
)
def test_hostile_campaign_files_fail_fast_and_clearly(
    tmp_path: Path, text: str, expect: str
) -> None:
    path = tmp_path / "hostile.yaml"
    path.write_text(text)
    t0 = time.monotonic()
    r = loopctl("validate", str(path), check=False)
    assert r.returncode != 0 and expect in r.stderr, r.stderr
    assert "hostile.yaml" in r.stderr
    assert time.monotonic() - t0 < scaled(30)  # was minutes and gigabytes


def test_element_symbols_are_pymatgens() -> None:
    """spec.py lists the symbols so that validating a file does not import pymatgen; they
    must stay the ones pymatgen's formulas (and so imports and pools) accept."""
    from pymatgen.core.periodic_table import Element

    assert set(Element.__members__) == ELEMENT_SYMBOLS


@pytest.mark.parametrize(
    ("composition", "expected"),
    [
        ("elements: [Cu]", "composition 'alloy' has one element, 'Cu'"),
        ("elements: [Cu, Xx]", "'Xx' is not a chemical element symbol (composition 'alloy')"),
        (
            "elements: [Cu, Pd], bounds: {Cu: [0.6, 0.9], Pd: [0.6, 0.9]}",
            "no composition 'alloy' fits: lower bounds sum to 1.2",
        ),
        (
            "elements: [Cu, Pd, Au], bounds: {Cu: [0.5, 0.5], Pd: [0.5, 0.5]}",
            "composition 'alloy' can only be Cu0.5 Pd0.5 Au0: its bounds leave nothing to vary",
        ),
        (
            "elements: [Cu, Pd], bounds: {Cu: [0.3, 0.3]}",
            "composition 'alloy' can only be Cu0.3 Pd0.7",
        ),
    ],
)
def test_a_bad_composition_is_reported_as_itself(composition: str, expected: str) -> None:
    """Beside a fixed parameter, a composition with a mistake was reported as "every
    parameter is fixed" too, as if the file had meant it; now only its own problem shows."""
    text = mutate(
        "space:\n  - {name: p, type: fixed, value: 1}\n"
        f"  - {{name: alloy, type: composition, {composition}}}"
    )
    with pytest.raises(SpecError) as err:
        parse_spec_text(text)
    assert err.value.problems == [err.value.problems[0]], err.value.problems
    assert expected in err.value.problems[0] and "[1]" in err.value.problems[0]


def test_a_space_of_fixed_parameters_is_refused() -> None:
    with pytest.raises(SpecError, match="every parameter is fixed"):
        parse_spec_text(mutate("space:\n  - {name: p, type: fixed, value: 1}"))
    parse_spec_text(mutate("space:\n  - {name: c, type: composition, elements: [Cu, Pd]}"))
