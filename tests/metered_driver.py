"""A driver for tests/test_fidelity_loop.py: it serves both levels of a campaign with
fidelities, records in each result the level its TASK named, and reports a measured cost
for the cheap level. ``python -m tests.metered_driver ENDPOINT OUTBOX``"""

from __future__ import annotations

import sys
from typing import Any

from loopctl.drivers.base import Driver, Result


class Metered(Driver):
    kind = "metered"

    def evaluate(self, parameters: dict[str, Any]) -> Result:
        level = self.current_fidelity()
        y = (parameters["x1"] - 2) ** 2 + (parameters["x2"] - 3) ** 2
        # the cheap level ran at half its declared cost; the other reports none
        return Result({"y": y}, {"level_seen": level}, cost=0.5 if level == "lo" else None)


if __name__ == "__main__":
    sys.exit(Metered(sys.argv[1], name="metered", outbox=sys.argv[2]).run())
