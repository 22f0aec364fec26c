"""Importing a library without the optional libraries it would load for nothing.

scikit-learn imports pandas when it starts (``sklearn.utils.fixes``: ``try: import
pandas``), only to recognise the DataFrames that loopctl never passes it, and pandas in
turn imports pyarrow. In a campaign's controller, whose default strategy fits a random
forest, the two came to 60-85 MB of resident memory out of about 430. Where scikit-learn
needs pandas later, it imports it then, or looks it up in ``sys.modules``; nothing reads
the name its start-up code keeps. (Measured by ``bench/lean.py``.)
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def without(*names: str) -> Iterator[None]:
    """Inside the block, importing one of ``names`` fails as if it were not installed,
    unless it is imported already (then nothing changes). Afterwards it imports normally.

    Meant for the import statement of a library, in the thread that imports it: another
    thread importing one of ``names`` at the same moment would be refused too."""
    hidden = [name for name in names if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]  # "import halted": ImportError
    try:
        yield
    finally:
        for name in hidden:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]
