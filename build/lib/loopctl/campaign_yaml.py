"""YAML as campaign files (and the robot driver's job mappings) are read.

Apart from loopctl.spec so that the commands that work from a campaign database alone --
`status`, `export` -- do not import PyYAML: the database holds the spec as JSON.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from loopctl.errors import SpecError


class _CampaignLoader(yaml.SafeLoader):
    """PyYAML's safe loader, but ``1e-5`` is a number.

    PyYAML resolves plain scalars by YAML 1.1, whose floats need a dot and a signed
    exponent: ``1.0e-5`` is a float there while ``1e-5`` and ``1E5`` are text, which
    is how scientists write them. Every other spelling Python's ``float()`` accepts
    (quoted, ``1_000.5``, ``nan``...) is read by the numeric fields themselves.
    """


_CampaignLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9][0-9_]*)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


# A hostile file must fail fast with a clear error, not exhaust memory or time: a
# 953-byte alias bomb expanded to gigabytes, and megabytes of options took minutes.
MAX_FILE_BYTES = 4 * 1024 * 1024  # inline pools of thousands of rows fit; bigger go in a CSV
MAX_VALUES = 1_000_000  # scalars, lists and mappings once aliases are expanded
MAX_DEPTH = 64
TOO_BIG = (
    "the file is {size:,} bytes, more than the {limit:,} a campaign file may have: put "
    "large pools in a CSV file (pool: {{file: ...}})"
)


def load_yaml(text: str) -> Any:
    """YAML as campaign files are read (see :class:`_CampaignLoader`), within the limits
    above; raises :class:`SpecError` past them and ``yaml.YAMLError`` on bad YAML."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_FILE_BYTES:
        raise SpecError(
            [TOO_BIG.format(size=len(text.encode("utf-8", "surrogatepass")), limit=MAX_FILE_BYTES)]
        )
    loader = _CampaignLoader(text)
    try:
        try:
            node = loader.get_single_node()
        except RecursionError:
            raise SpecError([f"nested more than {MAX_DEPTH} levels deep"]) from None
        if node is None:
            return None
        _check_expansion(node)
        return loader.construct_document(node)  # a SafeLoader: builds plain data only
    finally:
        loader.dispose()


def _check_expansion(root: yaml.Node) -> None:
    """How many values the document holds once every alias is expanded, and how deep, from
    the node graph (aliases share nodes, so this costs one visit per distinct node)."""
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    open_: set[int] = set()
    while stack:
        node, done = stack.pop()
        key = id(node)
        kids: list[yaml.Node] = []
        if isinstance(node, yaml.SequenceNode):
            kids = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            kids = [n for pair in node.value for n in pair]
        if done:
            open_.discard(key)
            size[key] = 1 + sum(size[id(k)] for k in kids)
            depth[key] = 1 + max((depth[id(k)] for k in kids), default=0)
            if size[key] > MAX_VALUES:
                raise SpecError(
                    [f"expands to more than {MAX_VALUES:,} values (YAML aliases): refused"]
                )
            if depth[key] > MAX_DEPTH:
                raise SpecError([f"nested more than {MAX_DEPTH} levels deep"])
            continue
        if key in size:
            continue
        if key in open_:
            raise SpecError(["a YAML alias refers to a value that contains it"])
        open_.add(key)
        stack.append((node, True))
        stack.extend((k, False) for k in kids if id(k) not in size)


def read_yaml(text: str, source: str = "campaign") -> Any:
    """The document, or a :class:`SpecError` naming the line and column of bad YAML."""
    try:
        return load_yaml(text)
    except SpecError as exc:
        raise SpecError(exc.problems, source=source) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise SpecError([f"{where}not valid YAML ({problem})"], source=source) from None
