"""que-core hooks for Django (loaded through the ``que.plugins`` entry point).

* ``enqueue(conn=django.db.connection)`` (or ``connections["other"]``) works:
  a Django connection is wrapped with its transaction kept;
* :class:`ConnectionCleanup`, registered by the app's ``ready()``: in worker
  threads, ``close_old_connections()`` before and after each job, as Django
  does around each request (``CONN_MAX_AGE``, broken connections).

Nothing here imports Django unless Django is already imported.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

from que_core.connection import Connection
from que_core.hookspecs import hookimpl


@hookimpl
def que_wrap_connection(raw: Any) -> Connection | None:
    base = sys.modules.get("django.db.backends.base.base")
    if base is None:  # Django not imported: raw cannot be its connection
        return None
    proxy = sys.modules.get("django.utils.connection")
    if proxy is not None and type(raw) is proxy.ConnectionProxy:
        raw = raw._connections[raw._alias]
    if not isinstance(raw, base.BaseDatabaseWrapper):
        return None
    from que_core.contrib.django.db import wrap

    return wrap(raw)


def _in_worker_thread() -> bool:
    # Only a Worker's own threads: never the caller's thread (inline jobs,
    # testing.drain() inside a test's transaction).
    return threading.current_thread().name.startswith("que-worker-")


def _close_old_connections() -> None:
    if _in_worker_thread():
        from django.db import close_old_connections

        close_old_connections()


class ConnectionCleanup:
    """Closes this worker thread's stale Django connections around each job."""

    @hookimpl
    def que_job_started(self, job: Any) -> None:
        _close_old_connections()

    @hookimpl
    def que_job_succeeded(self, job: Any, duration: float) -> None:
        _close_old_connections()

    @hookimpl
    def que_job_errored(
        self, job: Any, error: BaseException, duration: float, retry_in: float
    ) -> None:
        _close_old_connections()

    @hookimpl
    def que_job_expired(self, job: Any, error: BaseException, duration: float) -> None:
        _close_old_connections()


CLEANUP = ConnectionCleanup()
