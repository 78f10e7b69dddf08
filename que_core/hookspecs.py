"""Hook specifications: the only way plugins talk to que-core.

Plugins are found through entry points, never a registry edited by hand:

* group ``que.adapters``: database adapters. The entry point name is the
  adapter's name (``psycopg``, ``psycopg2``, ``pg8000``, ``asyncpg``, ...)
  and its value a module implementing :func:`que_adapter` (the core asks the
  adapter's own ``wrap``/``awrap`` for the caller's connections).
* group ``que.plugins``: anything else (metrics, tracing, error reporting),
  implementing any of the lifecycle hooks below.

Implement a hook with ``@que_core.hookimpl`` on a module-level function of
the same name.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pluggy

from que_core.connection import Adapter, AsyncAdapter, AsyncConnection, Connection

PROJECT = "que"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def que_adapter() -> Adapter | AsyncAdapter:  # type: ignore[empty-body]
    """Return the adapter this plugin provides: an object with a sync side
    (:class:`~que_core.connection.Adapter`), an async side
    (:class:`~que_core.connection.AsyncAdapter`), or both."""


A = TypeVar("A")
C = TypeVar("C")


def wrapper(
    driver_type: type[Any] | tuple[type[Any], ...], connection: Callable[..., C]
) -> Callable[[Any, Any], C | None]:
    """An adapter's ``wrap`` (or ``awrap``): the caller's *driver_type*
    connection in *connection*, not owned (never closed by the core); anything
    else None. In the adapter's class: ``wrap = wrapper(driver.Connection, MyConnection)``."""

    def wrap(self: Any, raw: Any) -> C | None:
        return connection(raw, owned=False) if isinstance(raw, driver_type) else None

    return wrap


def close_owned(connection: Any) -> None:
    """A sync connection's ``close()`` for a driver whose own is harmless
    twice: closes ``connection.raw`` only if ``connection._owned`` (a
    :func:`wrapper`'s is not: the caller's). In the class: ``close = close_owned``."""
    if connection._owned:
        connection.raw.close()


def adapter_hook(adapter: A) -> Callable[[], A]:
    """The :func:`que_adapter` implementation of a module that provides
    *adapter*: ``que_adapter = adapter_hook(ADAPTER)`` at module level."""

    @hookimpl
    def que_adapter() -> A:
        return adapter

    return que_adapter


@hookspec(firstresult=True)
def que_wrap_connection(raw: Any) -> Connection | None:
    """Wrap *raw* if it is a connection of this plugin's framework, else return None.

    Called for a connection passed as ``enqueue(conn=...)`` that no adapter's
    ``wrap`` took (Django's connection, SQLAlchemy's sessions);
    decide by the connection's type, cheaply, without touching the server.
    """


@hookspec(firstresult=True)
def que_awrap_connection(raw: Any) -> AsyncConnection | Awaitable[AsyncConnection] | None:
    """The async twin of :func:`que_wrap_connection`, for ``aenqueue(conn=...)``.

    Adapters need not implement it (their ``awrap`` is asked first); a
    framework plugin whose objects take a round trip to wrap (SQLAlchemy's
    ``AsyncSession``) returns an awaitable of the connection. Decide whether
    *raw* is yours by type, before any await: return None at once if not.
    """


# -- lifecycle hooks (group ``que.plugins``: metrics, tracing, error reports) --
# They run on the worker thread that works the job; keep them quick, and
# never raise (an exception is logged and ignored).


@hookspec
def que_job_started(job: Any) -> None:
    """A worker thread is about to call ``job.run``."""


@hookspec
def que_job_succeeded(job: Any, duration: float) -> None:
    """``job.run`` returned; the job is resolved (destroyed, finished, ...)."""


@hookspec
def que_job_errored(job: Any, error: BaseException, duration: float, retry_in: float) -> None:
    """``job.run`` raised; the error is recorded and the job runs again in *retry_in* s."""


@hookspec
def que_job_expired(job: Any, error: BaseException, duration: float) -> None:
    """``job.run`` raised once more than the job's maximum retry count: expired."""


@hookspec
def que_job_cancelled(job: Any, reason: str | None, duration: float) -> None:
    """The job was cancelled (``que jobs cancel``) while a worker held it:
    stopped if it ran, or never started; recorded as cancelled."""


@hookspec
def que_worker_started(worker: Any) -> None:
    """A :class:`que_core.Worker` started."""


@hookspec
def que_worker_stopped(worker: Any) -> None:
    """A :class:`que_core.Worker` stopped."""
