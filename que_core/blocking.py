"""A sync :class:`~que_core.connection.Connection` over an async one (and,
for inline mode, the reverse: :func:`async_over`).

Two places block on an async session: a sync job that ``aenqueue`` runs in
inline mode, in a thread while the caller's event loop keeps the session
(:func:`on_loop`), and test databases and their migrations when the only
adapter at hand has no sync side (:func:`sync_side`, for
:mod:`que_core.testing.databases`). Each statement is one coroutine of the async
connection, run to its end.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from que_core.connection import (
    Adapter,
    AsyncAdapter,
    AsyncConnection,
    Connection,
    Notification,
    Row,
)

Run = Callable[[Coroutine[Any, Any, Any]], Any]


class BlockingConnection:
    """A sync Connection whose every call runs *inner*'s coroutine through
    *run* (which returns the coroutine's result or raises its exception).
    ``close()`` leaves *inner* open unless given *closed*, called after
    closing *inner* (the BlockingAdapter closes its loop there)."""

    def __init__(
        self, inner: AsyncConnection, run: Run, closed: Callable[[], None] | None = None
    ) -> None:
        self._inner = inner
        self._run = run
        self._after_close = closed
        self.raw = inner.raw

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        rows: list[Row] = self._run(self._inner.execute(sql, params))
        return rows

    @contextmanager
    def transaction(self) -> Iterator[None]:
        block = self._inner.atransaction()
        self._run(block.__aenter__())
        try:
            yield
        except BaseException as exc:
            if not self._run(block.__aexit__(type(exc), exc, exc.__traceback__)):
                raise
        else:
            self._run(block.__aexit__(None, None, None))

    def notifications(self, timeout: float) -> list[Notification]:
        got: list[Notification] = self._run(self._inner.notifications(timeout))
        return got

    def copy_in(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self._run(self._inner.copy_in(sql, rows))

    def reset(self) -> bool:
        return bool(self._run(self._inner.reset()))

    def close(self) -> None:
        if self._after_close is None:
            return
        try:
            self._run(self._inner.close())
        finally:
            self._after_close()

    @property
    def closed(self) -> bool:
        return self._inner.closed


class AsyncOverSync:
    """An AsyncConnection whose every call is *inner*'s, blocking (an
    ``async def`` job that a sync ``enqueue`` runs in inline mode, on a loop
    of its own, with the caller's sync session)."""

    def __init__(self, inner: Connection) -> None:
        self._inner = inner
        self.raw = inner.raw

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return self._inner.execute(sql, params)

    @asynccontextmanager
    async def atransaction(self) -> AsyncIterator[None]:
        with self._inner.transaction():
            yield

    async def notifications(self, timeout: float) -> list[Notification]:
        return self._inner.notifications(timeout)

    async def copy_in(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self._inner.copy_in(sql, rows)

    async def reset(self) -> bool:
        return self._inner.reset()

    async def close(self) -> None:
        self._inner.close()

    @property
    def closed(self) -> bool:
        return self._inner.closed


def async_over(inner: Connection) -> AsyncOverSync:
    """*inner* as an AsyncConnection that blocks (see :class:`AsyncOverSync`)."""
    return AsyncOverSync(inner)


def on_loop(inner: AsyncConnection, loop: asyncio.AbstractEventLoop) -> BlockingConnection:
    """*inner* for another thread than the one running *loop*, which owns it.
    Closing it leaves *inner* open: the caller owns that."""

    def run(coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, loop).result()

    return BlockingConnection(inner, run)


class BlockingAdapter:
    """The sync side of an async-only adapter, for tests: ``connect`` opens
    the async session on an event loop of its own, in this thread (so not
    inside a running loop), closed with the connection."""

    def __init__(self, inner: AsyncAdapter) -> None:
        self.inner = inner
        self.name = inner.name

    def connect(self, dsn: str) -> BlockingConnection:
        loop = asyncio.new_event_loop()
        try:
            conn = loop.run_until_complete(self.inner.aconnect(dsn))
        except BaseException:
            loop.close()
            raise
        return BlockingConnection(conn, loop.run_until_complete, closed=loop.close)

    def wrap(self, raw: Any) -> None:
        return None  # it opens sessions; a caller's are for the async side


def sync_side(adapter: Adapter | AsyncAdapter) -> Adapter:
    """*adapter*'s sync side, or a :class:`BlockingAdapter` over its async one."""
    if isinstance(adapter, Adapter):
        return adapter
    return BlockingAdapter(adapter)
