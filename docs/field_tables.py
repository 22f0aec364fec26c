"""Write the field tables of docs/campaign-file.md from loopctl.schema's table.

Each table sits between ``<!-- fields:SECTION -->`` and ``<!-- /fields -->`` (SECTION one of
loopctl.schema.SECTIONS); the prose around them is left as it is. With ``--check`` nothing is
written and the exit status is 1 when a table differs from what the schema gives
(tests/test_campaign_docs.py runs it).

    python docs/field_tables.py [--check]
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the checkout's loopctl, installed or not

from loopctl.schema import SECTIONS, Field  # noqa: E402

DOC = ROOT / "docs" / "campaign-file.md"
BLOCK = re.compile(r"(<!-- fields:(?P<key>[\w.]+) -->\n)(?P<table>.*?)(<!-- /fields -->)", re.S)


def type_text(f: Field) -> str:
    if f.doc_type is not None:
        return f.doc_type
    if f.kind in ("choice", "boolean"):
        words = f.choices if f.kind == "choice" else ("true", "false", *f.choices)
        names = [f"`{c}`" for c in words]
        return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]
    if f.kind == "integer":
        return "integer" if f.low is None else f"integer ≥ {f.low:g}"
    if f.kind == "number":
        return "number > 0" if f.positive else "number"
    if f.kind in ("section", "mapping"):
        return "mapping"
    return {"name": "name", "text": "text", "list": "list"}.get(f.kind, f.kind)


def default_text(f: Field) -> str:
    if f.required:
        return "required"
    if f.doc_default is not None:
        return f.doc_default
    if f.default is None:
        return "none"
    if isinstance(f.default, bool):
        return f"`{str(f.default).lower()}`"
    return f"`{f.default}`"


def table(section: str) -> str:
    rows = ["| field | type | default | meaning |", "| --- | --- | --- | --- |"]
    rows += [
        f"| `{f.name}` | {type_text(f)} | {default_text(f)} | {f.meaning} |"
        for f in SECTIONS[section]
    ]
    return "\n".join(rows) + "\n"


def regenerate(text: str) -> str:
    def fill(m: re.Match[str]) -> str:
        if m["key"] not in SECTIONS:
            raise SystemExit(f"{DOC}: no section {m['key']!r} in loopctl.schema")
        return m[1] + table(m["key"]) + m[4]

    return BLOCK.sub(fill, text)


def main(argv: list[str]) -> int:
    text = DOC.read_text(encoding="utf-8")
    new = regenerate(text)
    missing = set(SECTIONS) - {m["key"] for m in BLOCK.finditer(text)}
    if missing:
        print(f"{DOC}: no table for {', '.join(sorted(missing))}", file=sys.stderr)
        return 1
    if "--check" in argv:
        if new != text:
            print(
                f"{DOC}: field tables are stale; run python docs/field_tables.py", file=sys.stderr
            )
            return 1
        return 0
    DOC.write_text(new, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
