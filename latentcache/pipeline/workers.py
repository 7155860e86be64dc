"""What our LocalCluster's Dask workers run at start-up (a module of its own, so that the
encode path without Dask never imports ``distributed``).

::

    _dask_client ─► LocalCluster ─► client.register_plugin(WorkerSetup(log level))
                                      └► every worker (restarted ones too): SIGINT ignored,
                                         distributed's log level = the driver's
"""

from __future__ import annotations

import logging
import signal
import threading

from distributed import WorkerPlugin

__all__ = ["WorkerSetup"]


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
