"""An in-process worker tied to an application's life (used by the Flask,
FastAPI and ASGI integrations; usable from any WSGI/ASGI app).

::

    managed = ManagedWorker(dsn, queues=["default"], migrate=True)
    managed.start()        # idempotent, thread-safe; also stops at interpreter exit
    ...
    managed.stop()         # lets running jobs finish (up to shutdown_timeout)

Start it in the process that serves requests, after any fork (a
pre-forking server such as gunicorn forks after importing the app: start in
a post-fork hook, on the first request, or in the ASGI lifespan).
"""

from __future__ import annotations

import atexit
import logging
import threading
from typing import Any

from que_core.worker import Worker

log = logging.getLogger("que_core.contrib")


class ManagedWorker:
    """Starts a :class:`~que_core.Worker` once and stops it cleanly.

    :param dsn: the jobs' database (``$DATABASE_URL`` if None).
    :param adapter: adapter name (default: the installed one).
    :param migrate: bring the schema to the latest version before starting.
    :param shutdown_timeout: seconds :meth:`stop` lets running jobs finish.
    :param stop_at_exit: also stop at interpreter exit (``atexit``).
    :param worker_kwargs: the rest of :class:`~que_core.Worker`'s arguments
        (``queues``, ``worker_count``, ``poll_interval``, ...).
    """

    def __init__(
        self,
        dsn: str | None = None,
        *,
        adapter: str | None = None,
        migrate: bool = False,
        shutdown_timeout: float | None = 30.0,
        stop_at_exit: bool = True,
        **worker_kwargs: Any,
    ) -> None:
        self.dsn = dsn
        self.adapter = adapter
        self.migrate = migrate
        self.shutdown_timeout = shutdown_timeout
        self.stop_at_exit = stop_at_exit
        self.worker_kwargs = worker_kwargs
        self.worker: Worker | None = None
        self._lock = threading.Lock()

    @property
    def running(self) -> bool:
        return self.worker is not None and self.worker.running

    def start(self) -> Worker:
        """Start the worker unless it is running; return it."""
        with self._lock:
            if self.worker is not None:
                return self.worker
            worker = Worker(self.dsn, adapter=self.adapter, **self.worker_kwargs)
            if self.migrate:
                from que_core.migrations import migrate

                conn = worker.adapter.connect(worker.dsn)
                try:
                    migrate(conn)
                finally:
                    conn.close()
            worker.start()
            self.worker = worker
            if self.stop_at_exit:
                atexit.register(self.stop)
            return worker

    def stop(self) -> bool:
        """Stop the worker if it runs; True when every running job finished."""
        with self._lock:
            worker, self.worker = self.worker, None
            if self.stop_at_exit:
                atexit.unregister(self.stop)
        if worker is None:
            return True
        clean = worker.stop(timeout=self.shutdown_timeout)
        if not clean:
            log.warning("que-core worker stopped with jobs unfinished: they will run again")
        return clean
