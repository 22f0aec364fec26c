"""Many real SDK drivers in one process, one thread and one DEALER socket each.

``python -m tests.many_drivers ENDPOINT N OUTBOX_DIR``: the start-up storm of a lab that
brings up dozens of drivers at once, without dozens of interpreters on two cores. Exits
0 once every driver has been told SHUTDOWN and left, 1 if any ended otherwise.
"""

from __future__ import annotations

import logging
import sys
import threading
from pathlib import Path

from loopctl.drivers.oracle import OracleDriver


def main(endpoint: str, n: int, outboxes: Path) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(threadName)s %(levelname)s %(message)s"
    )
    codes: dict[int, int] = {}

    def serve(i: int) -> None:
        # a driver never told that the campaign ended gives up (status 4, said in the log)
        # instead of keeping the process, and so the test, waiting until its timeout
        drv = OracleDriver(
            endpoint, name=f"m{i:02d}", outbox=outboxes / f"m{i:02d}", give_up_after=60
        )
        codes[i] = drv.run()

    threads = [threading.Thread(target=serve, args=(i,), name=f"m{i:02d}") for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    bad = {i: c for i, c in codes.items() if c != 0}
    print(f"{n} drivers done; non-zero exits: {bad}", flush=True)
    return 0 if not bad and len(codes) == n else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])))
