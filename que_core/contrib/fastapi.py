"""FastAPI (and Starlette): an in-process que-core worker in the app's lifespan.

::

    from fastapi import FastAPI
    from que_core.contrib.fastapi import que_lifespan

    app = FastAPI(lifespan=que_lifespan("postgresql://...", queues=["default"]))

The worker starts before the app serves requests and stops (letting running
jobs finish, up to ``shutdown_timeout`` seconds) when the app shuts down;
``request.app.state.que_worker`` is the running :class:`~que_core.Worker`.
Pass your own lifespan as ``lifespan=`` to run it inside que-core's.
Enqueue in a path operation with the connection your app already has (a
SQLAlchemy session, a driver connection): the job commits with it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

try:
    import anyio.to_thread
    from fastapi import Request
except ImportError as exc:  # pragma: no cover - exercised by a test that hides FastAPI
    raise ImportError(
        "que_core.contrib.fastapi needs FastAPI (que-core's fastapi extra): pip install fastapi"
    ) from exc

from que_core.contrib.lifecycle import ManagedWorker
from que_core.errors import ConfigurationError
from que_core.worker import Worker

__all__ = ["get_worker", "que_lifespan"]

Lifespan = Callable[[Any], AbstractAsyncContextManager[Any]]


def que_lifespan(
    dsn: str | None = None,
    *,
    lifespan: Lifespan | None = None,
    **managed_kwargs: Any,
) -> Lifespan:
    """A lifespan for ``FastAPI(lifespan=...)`` that runs a worker.

    *dsn* defaults to ``$DATABASE_URL``; the other keyword arguments are
    :class:`~que_core.contrib.lifecycle.ManagedWorker`'s (``adapter``,
    ``migrate``, ``shutdown_timeout``, ``queues``, ``worker_count``, ...).
    """

    @asynccontextmanager
    async def run(app: Any) -> AsyncIterator[Any]:
        managed = ManagedWorker(dsn, stop_at_exit=False, **managed_kwargs)
        worker = await anyio.to_thread.run_sync(managed.start)
        app.state.que_worker = worker
        try:
            if lifespan is None:
                yield None
            else:
                async with lifespan(app) as state:
                    yield state
        finally:
            app.state.que_worker = None
            await anyio.to_thread.run_sync(managed.stop)

    return run


def get_worker(request: Request) -> Worker:
    """A dependency: the app's running worker (``Depends(get_worker)``)."""
    worker: Worker | None = getattr(request.app.state, "que_worker", None)
    if worker is None:
        raise ConfigurationError("no que-core worker: use FastAPI(lifespan=que_lifespan(...))")
    return worker
