"""`loopctl driver dask`: the oracle's evaluations on a Dask cluster (dask.distributed).

A Dask ``Client`` is a ``concurrent.futures`` executor already (``client.get_executor()``),
so this is :class:`drivers.executor.ExecutorDriver` with a client: to a running scheduler
(``--scheduler tcp://HOST:8786``, e.g. one that dask-jobqueue's ``SLURMCluster`` started),
or to a ``LocalCluster`` of N single-threaded worker processes (``--local N``).

Dask re-runs a task whose worker died, up to ``distributed.scheduler.allowed-failures``
times, before it gives up with ``KilledWorker``; the local cluster sets that to 0, so that
a lost worker is reported at once (FAILED, retryable) and the campaign's ``retries``
decide. A remote scheduler keeps its own setting.
"""

from __future__ import annotations

from typing import Any

from loopctl.drivers.executor import ExecutorDriver, log
from loopctl.errors import LoopctlError


class DaskDriver(ExecutorDriver):
    kind = "dask"

    def __init__(
        self,
        connect: str,
        *,
        scheduler: str | None = None,
        local: int | None = None,
        capacity: int | None = None,
        **sdk: Any,
    ) -> None:
        import dask
        from distributed import Client, LocalCluster
        from distributed.scheduler import KilledWorker

        self._cluster: Any = None
        if local is not None:
            with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
                self._cluster = LocalCluster(
                    n_workers=local, threads_per_worker=1, dashboard_address=None
                )
            self.client = Client(self._cluster)
            # printed so that a user can watch it (a Client, the dashboard) or reach a worker
            log.info("local Dask cluster: scheduler at %s", self._cluster.scheduler_address)
        elif scheduler is not None:
            self.client = Client(scheduler)
        else:
            raise LoopctlError("give --scheduler ADDRESS or --local N")
        threads = sum(self.client.nthreads().values())
        if not (capacity or threads):
            self.close()
            raise LoopctlError("the Dask scheduler has no workers yet: give --capacity")
        super().__init__(
            connect,
            self.client.get_executor(pure=False),  # a trial run again is a new task
            capacity=capacity or threads,
            lost=(KilledWorker,),
            workers=lambda: len(self.client.nthreads()),
            **sdk,
        )

    def close(self) -> None:
        self.client.close()
        if self._cluster is not None:
            self._cluster.close()

    def run(self) -> int:
        try:
            return super().run()
        finally:
            self.close()
