"""Where a process's time went, from py-spy's collapsed stacks (``py-spy record -f raw``).

Prints the functions with the largest inclusive share of the samples (time in the
function or anything it called) and the largest self share (time in the function's own
frame), each as a percentage of all samples; ``--under NAME`` keeps only the stacks
that pass through a function whose name contains NAME (one event-loop stage, say).

    python bench/stacks.py controller-FULL-8.txt [--top 30] [--under _commit]
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

# a py-spy frame: "function (path/to/module.py:123)"; lines differ within one function
FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^():]*?)(?::\d+)?\)$")


def frame_name(frame: str) -> str:
    m = FRAME.match(frame.strip())
    if not m:
        return frame.strip()
    file = m["file"]
    short = "/".join(Path(file).parts[-2:]) if file else "?"
    return f"{m['func']} ({short})"


def read(path: Path, under: str | None) -> tuple[Counter[str], Counter[str], Counter[str], int]:
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    children: Counter[str] = Counter()  # with --under: what its deepest match called
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [frame_name(f) for f in stack.split(";")]
        n = int(count)
        if under is not None:
            at = [i for i, f in enumerate(frames) if under in f]
            if not at:
                continue
            i = at[-1]
            children[frames[i + 1] if i + 1 < len(frames) else "(own frame)"] += n
        total += n
        for f in set(frames):
            inclusive[f] += n
        own[frames[-1]] += n
    return inclusive, own, children, total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("file", type=Path)
    ap.add_argument("--top", type=int, default=30)
    ap.add_argument("--under", help="only stacks through a function whose name contains this")
    args = ap.parse_args()
    inclusive, own, children, total = read(args.file, args.under)
    print(f"{total} samples")
    tables = [("inclusive", inclusive), ("self", own)]
    if args.under:
        tables.insert(0, (f"called by {args.under}", children))
    for title, counts in tables:
        print(f"\n{title} %")
        for name, n in counts.most_common(args.top):
            print(f"{100 * n / max(total, 1):6.1f}  {name}")


if __name__ == "__main__":
    main()
