"""docs/campaign-file.md's field tables are the ones loopctl.schema's table gives: a field
added, removed or changed in the schema fails here until `python docs/field_tables.py` has
rewritten them."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from types import ModuleType

from loopctl.schema import KINDS, PARAM_TYPES, SECTIONS, field_of
from loopctl.spec import parse_spec
from tests.conftest import ENV, ROOT, scaled

SCRIPT = ROOT / "docs" / "field_tables.py"


def field_tables() -> ModuleType:
    spec = importlib.util.spec_from_file_location("field_tables", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_docs_field_tables_are_current() -> None:
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--check"],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=scaled(60),
    )
    assert out.returncode == 0, out.stderr


def test_every_section_has_a_table_with_every_field() -> None:
    text = (ROOT / "docs" / "campaign-file.md").read_text(encoding="utf-8")
    for section, fields in SECTIONS.items():
        start = text.index(f"<!-- fields:{section} -->")
        block = text[start : text.index("<!-- /fields -->", start)]
        assert [line.split("`")[1] for line in block.splitlines()[3:]] == [f.name for f in fields]


def test_a_stale_table_is_rewritten_and_the_prose_kept() -> None:
    ft = field_tables()
    stale = (
        "Prose before.\n\n<!-- fields:budget -->\n| field | type | default | meaning |\n"
        "| `trails` | integer | required | a typo |\n<!-- /fields -->\n\nProse after.\n"
    )
    new = ft.regenerate(stale)
    assert new.startswith("Prose before.\n\n<!-- fields:budget -->\n| field | type |")
    assert new.endswith("<!-- /fields -->\n\nProse after.\n")
    assert "`trails`" not in new
    assert "| `trials` | integer ≥ 1 | required |" in new
    assert ft.regenerate(new) == new


def test_the_defaults_shown_are_the_ones_a_campaign_gets() -> None:
    """A field left out reads as the table's default (which the docs and the schema show)."""
    spec = parse_spec(
        {
            "name": "defaults",
            "space": [{"name": "x", "type": "range", "bounds": [0, 1]}],
            "objectives": [{"name": "y", "goal": "minimize"}],
            "budget": {"trials": 3},
            "oracle": {"kind": "function", "function": "sphere"},
        }
    )
    sections = {
        "top": spec,
        "budget": spec.budget,
        "execution": spec.execution,
        "strategy": spec.strategy,
        "oracle": spec.oracle,
        "drivers": spec.drivers,
        "security": spec.security,
    }
    checked = 0
    for section, obj in sections.items():
        for f in SECTIONS[section]:
            if f.plain and not f.required and f.kind != "mapping" and f.name != "function":
                got = getattr(obj, f.name)
                assert got == f.default or (f.default is None and got == ""), (section, f.name)
                checked += 1
    assert spec.execution.timeout_auto and field_of("execution", "trial_timeout").default == "auto"
    assert checked >= 15


def test_the_table_is_consistent() -> None:
    """Kinds the readers know, sections that exist, and one field per name in each mapping."""
    for section, fields in SECTIONS.items():
        for f in fields:
            assert f.kind in KINDS, (section, f.name)
            assert (f.section in SECTIONS) == (f.kind in ("section", "list")), (section, f.name)
            assert (f.json is not None) <= (f.kind in ("custom", "any")), (section, f.name)
        for ptype in PARAM_TYPES if section == "space" else [None]:
            names = [f.name for f in fields if ptype is None or not f.types or ptype in f.types]
            assert len(names) == len(set(names)), (section, ptype)
