"""The LocalCluster that ``encode --workers N`` starts, and what its workers run at start-up (a
module of its own, so that the encode path without Dask never imports ``distributed``).

::

    local_cluster(N) ─► LocalCluster: N processes x (one "encode" slot, one "write" slot)
                         └ Dask config for its workers: glibc's malloc left alone, no profiler
    client.register_plugin(WorkerSetup(log level))
                         └► every worker (restarted ones too): SIGINT ignored,
                            distributed's log level = the driver's
"""

from __future__ import annotations

import logging
import signal
import threading

import dask
from distributed import LocalCluster, WorkerPlugin

__all__ = ["RESOURCES", "WorkerSetup", "local_cluster"]

RESOURCES = {"encode": 1, "write": 1}  # per worker: one shard encoding, one being written


def _worker_config() -> dict:
    """Measured on the codec's tasks (one worker against the same task in the driver): Dask's
    nanny sets ``MALLOC_TRIM_THRESHOLD_`` in every worker, which turns off glibc's dynamic mmap
    threshold, so every convolution activation is mmap'd and page-faulted anew (1.45x the
    time); the worker's statistical profiler, sampling every thread's stack every 10 ms, cost
    another 15-20 %. Without both a worker runs a task as fast as the driver does."""
    env = dict(dask.config.get("distributed.nanny.pre-spawn-environ", {}))
    env.pop("MALLOC_TRIM_THRESHOLD_", None)
    return {
        "distributed.nanny.pre-spawn-environ": env,
        "distributed.worker.profile.enabled": False,
    }


def local_cluster(n_workers: int, dashboard: str | None = "127.0.0.1:8787") -> LocalCluster:
    """``n_workers`` processes, each with one encode and one write slot (``RESOURCES``)."""
    with dask.config.set(_worker_config()):
        return LocalCluster(
            n_workers=n_workers,
            threads_per_worker=sum(RESOURCES.values()),
            resources=RESOURCES,
            processes=True,
            dashboard_address=dashboard,
        )


class WorkerSetup(WorkerPlugin):
    """A terminal's Ctrl-C reaches every process of its group: the driver alone handles it and
    shuts its workers down, instead of each worker dying with its own traceback; and the
    workers log no more than the driver does."""

    def __init__(self, log_level: int):
        self.log_level = log_level

    def setup(self, worker) -> None:
        logging.getLogger("distributed").setLevel(self.log_level)
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, signal.SIG_IGN)
