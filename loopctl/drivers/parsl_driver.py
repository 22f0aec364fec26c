"""`loopctl driver parsl`: the oracle's evaluations as Parsl apps on a HighThroughputExecutor.

Parsl brings the parts of a cluster we do not write: providers that get nodes from SLURM,
PBS or Kubernetes (or this machine), and an executor (ZeroMQ, with heartbeats) that spreads
tasks over the workers on them. The configuration is a Python file defining ``config``
(a ``parsl.config.Config``), or one of the presets here: ``local`` (N workers on this
machine) and ``slurm`` (one block of NODES nodes from a partition).

The interchange (the process between this driver and the workers) is started so that it
dies with the driver (Linux ``PR_SET_PDEATHSIG``): a SIGKILLed driver leaves no interchange
behind, and its worker pools, no longer hearing from it, exit after ``heartbeat_threshold``
(which also ends their SLURM job). What they were computing is discarded; the controller
puts those trials back (docs/drivers.md, "Running evaluations on a cluster").
"""

from __future__ import annotations

import logging
import os
import runpy
import sys
from collections.abc import Callable
from concurrent.futures import Executor, Future
from pathlib import Path
from typing import Any

from loopctl.drivers.base import _state_dir
from loopctl.drivers.executor import ExecutorDriver
from loopctl.errors import LoopctlError

PRESETS = ("local", "slurm")
# how often a worker pool and the interchange say they are alive, and how long silence
# means gone: a killed worker is noticed within a period, a vanished interchange (its driver
# killed) ends the pool within the threshold, instead of Parsl's 30 s and 120 s
HEARTBEAT_PERIOD = 2
HEARTBEAT_THRESHOLD = 20
# the interchange as Parsl starts it, but asking the kernel to end it with its parent
_INTERCHANGE = (
    "import ctypes, runpy, signal, sys\n"
    "if sys.platform == 'linux':\n"
    "    ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG\n"
    "runpy.run_module('parsl.executors.high_throughput.interchange', run_name='__main__')\n"
)


class ParslExecutor(Executor):
    """A Parsl DataFlowKernel behind the ``concurrent.futures.Executor`` interface (its
    AppFutures are ``concurrent.futures.Future`` already). Parsl's own retries stay off:
    whether a trial is tried again is the campaign's decision (``execution.retries``)."""

    def __init__(self, config: Any) -> None:
        from parsl.dataflow.dflow import DataFlowKernel

        config.retries = 0
        _quiet_parsl()
        self.dfk = DataFlowKernel(config)
        self._apps: dict[Callable[..., Any], Any] = {}

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        from parsl import python_app

        if fn not in self._apps:
            self._apps[fn] = python_app(fn, data_flow_kernel=self.dfk)
        future: Future[Any] = self._apps[fn](*args, **kwargs)
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self.dfk.cleanup()

    def workers(self) -> int:
        """Workers connected now, over the HighThroughputExecutors (their worker pools
        say how many they run when they register with the interchange)."""
        from parsl.executors import HighThroughputExecutor

        return sum(
            int(m["worker_count"])
            for ex in self.dfk.executors.values()
            if isinstance(ex, HighThroughputExecutor)
            for m in ex.connected_managers()
            if m["active"]
        )


def _quiet_parsl() -> None:
    """Parsl logs every task at INFO into its run_dir's parsl.log; the driver's own log
    (``-v``) shows only Parsl's warnings and errors, not hundreds of lines per minute."""
    logger = logging.getLogger("parsl")
    if logger.propagate:
        logger.propagate = False
        console = logging.StreamHandler()
        console.setLevel(logging.WARNING)
        console.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(console)


def default_run_dir(name: str) -> Path:
    """Parsl's logs and submit scripts of the driver ``name``, out of the working directory."""
    return _state_dir() / "parsl" / name


def local_config(workers: int, run_dir: str | Path) -> Any:
    """``workers`` processes on this machine, behind an interchange on loopback."""
    from parsl.config import Config
    from parsl.executors import HighThroughputExecutor
    from parsl.providers import LocalProvider

    _put_scripts_on_path()
    return Config(
        executors=[
            _htex(
                HighThroughputExecutor,
                address="127.0.0.1",
                max_workers_per_node=workers,
                provider=LocalProvider(init_blocks=1, min_blocks=1, max_blocks=1),
            )
        ],
        run_dir=str(run_dir),
        strategy="none",  # one block, started at once, kept: nothing to scale
    )


def slurm_config(
    *,
    partition: str,
    walltime: str,
    nodes: int,
    workers_per_node: int,
    run_dir: str | Path,
    account: str | None = None,
    worker_init: str | None = None,
) -> Any:
    """One block of ``nodes`` nodes from ``partition`` for ``walltime``, ``workers_per_node``
    workers on each. ``worker_init`` runs on each node first (default: put this Python's
    scripts and PYTHONPATH on PATH, right when the nodes share this file system)."""
    from parsl.config import Config
    from parsl.executors import HighThroughputExecutor
    from parsl.launchers import SrunLauncher
    from parsl.providers import SlurmProvider

    if worker_init is None:
        worker_init = f"export PATH={Path(sys.executable).parent}:$PATH"
        if os.environ.get("PYTHONPATH"):
            worker_init += f"; export PYTHONPATH={os.environ['PYTHONPATH']}"
    provider = SlurmProvider(
        partition=partition,
        account=account,
        nodes_per_block=nodes,
        init_blocks=1,
        min_blocks=1,
        max_blocks=1,
        walltime=walltime,
        worker_init=worker_init,
        launcher=SrunLauncher(),
    )
    return Config(
        executors=[
            _htex(HighThroughputExecutor, max_workers_per_node=workers_per_node, provider=provider)
        ],
        run_dir=str(run_dir),
        strategy="none",
    )


def _htex(cls: Any, **kwargs: Any) -> Any:
    return cls(
        label="loopctl",
        interchange_launch_cmd=[sys.executable, "-c", _INTERCHANGE],
        heartbeat_period=HEARTBEAT_PERIOD,
        heartbeat_threshold=HEARTBEAT_THRESHOLD,
        **kwargs,
    )


def _put_scripts_on_path() -> None:
    """LocalProvider starts ``process_worker_pool.py`` through the shell: it must be on
    PATH, also when this Python's environment was not activated."""
    scripts = str(Path(sys.executable).parent)
    if scripts not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = scripts + os.pathsep + os.environ.get("PATH", "")


def config_from_file(path: str | Path, run_dir: str | Path | None) -> Any:
    """The ``config`` a Python file defines; ``run_dir`` (when given) replaces its run_dir."""
    from parsl.config import Config

    try:
        namespace = runpy.run_path(str(path))
    except OSError as exc:
        raise LoopctlError(f"cannot read the Parsl config {path}: {exc}") from None
    config = namespace.get("config")
    if not isinstance(config, Config):
        raise LoopctlError(
            f"{path} must define `config`, a parsl.config.Config (found {type(config).__name__})"
        )
    if run_dir is not None:
        config.run_dir = str(run_dir)
    _put_scripts_on_path()
    return config


def worker_count(config: Any) -> int | None:
    """Workers the configuration asks for: over its HighThroughputExecutors, workers per
    node x nodes per block x blocks. None when that is not fixed in advance (workers per
    node left to the cores a node turns out to have, or an executor of another kind)."""
    from parsl.executors import HighThroughputExecutor

    total = 0
    for ex in config.executors:
        if not isinstance(ex, HighThroughputExecutor):
            return None
        per_node = ex.max_workers_per_node
        if per_node == float("inf"):
            return None
        provider = ex.provider
        if provider is None:
            return None
        total += int(per_node) * int(provider.nodes_per_block) * int(provider.max_blocks)
    return total or None


class ParslDriver(ExecutorDriver):
    """The oracle on Parsl: a lost worker or worker pool (``WorkerLost``, ``ManagerLost``)
    is a retryable failure; an executor Parsl has marked failed (its blocks could not be
    started) puts the trial back and ends the driver."""

    kind = "parsl"

    def __init__(self, connect: str, config: Any, *, capacity: int | None = None, **sdk: Any):
        from parsl.executors.errors import BadStateException
        from parsl.executors.high_throughput.errors import ManagerLost, WorkerLost

        workers = capacity or worker_count(config)
        if workers is None:
            raise LoopctlError(
                "cannot tell how many workers this Parsl config has (give max_workers_per_node "
                "to each HighThroughputExecutor, or --capacity)"
            )
        executor = ParslExecutor(config)
        super().__init__(
            connect,
            executor,
            capacity=workers,
            lost=(WorkerLost, ManagerLost),
            broken=(BadStateException,),
            workers=executor.workers,
            **sdk,
        )
