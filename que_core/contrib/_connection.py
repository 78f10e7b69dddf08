"""A que-core Connection over a framework's connection (Django, SQLAlchemy),
and its async twin (SQLAlchemy's ``AsyncSession`` and ``AsyncConnection``).

Statements go straight to the driver connection under the framework's one,
through that driver's adapter, so they join the framework's transaction.
``transaction()`` blocks are the framework's own (a Django ``atomic`` block,
a SQLAlchemy ``begin_nested``): the framework keeps track of its savepoints,
and a que-core block opened first thing inside the framework's transaction
never commits that transaction early.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager, AbstractContextManager, asynccontextmanager
from typing import Any, Generic, TypeVar

from que_core.connection import AsyncConnection, Connection, Notification, Row

C = TypeVar("C", Connection, AsyncConnection)
#: What a transaction block is, sync or async.
B = TypeVar("B", AbstractContextManager[Any], AbstractAsyncContextManager[Any])


class _Framework(Generic[C, B]):
    def __init__(self, inner: C, blocks: Callable[[], B], owner: Any = None) -> None:
        #: The adapter's wrapper of the driver connection: statements go to it.
        self._inner: C = inner
        #: Opens one of the framework's transaction blocks.
        self._blocks: Callable[[], B] = blocks
        #: The driver's connection (psycopg, psycopg2, pg8000, asyncpg).
        self.raw = inner.raw
        #: The framework object it came from (Django wrapper, SQLAlchemy
        #: Session, Connection, AsyncSession or AsyncConnection).
        self.owner = owner

    def __repr__(self) -> str:
        return f"<{type(self).__name__} over {type(self.raw).__module__}.{type(self.raw).__name__}>"

    @property
    def closed(self) -> bool:
        return self._inner.closed


class FrameworkConnection(_Framework[Connection, AbstractContextManager[Any]]):
    """A :class:`~que_core.connection.Connection` that delegates statements to
    *inner* (the adapter's wrapper of the driver connection) and transaction
    blocks to *blocks*. Closing it closes nothing: the framework owns
    the session."""

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return self._inner.execute(sql, params)

    def transaction(self) -> AbstractContextManager[None]:
        return self._blocks()

    def notifications(self, timeout: float) -> list[Notification]:
        return self._inner.notifications(timeout)

    def copy_in(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self._inner.copy_in(sql, rows)

    def reset(self) -> bool:
        """Does nothing: the framework owns the session and its transaction."""
        return False

    def close(self) -> None:
        """Does nothing: the framework owns the session."""


class AsyncFrameworkConnection(_Framework[AsyncConnection, AbstractAsyncContextManager[Any]]):
    """The async twin of :class:`FrameworkConnection`: statements go to
    *inner* (the adapter's async wrapper), blocks are *blocks*' (a
    SQLAlchemy ``begin_nested``)."""

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return await self._inner.execute(sql, params)

    @asynccontextmanager
    async def atransaction(self) -> AsyncIterator[None]:
        async with self._blocks():
            yield

    async def notifications(self, timeout: float) -> list[Notification]:
        return await self._inner.notifications(timeout)

    async def copy_in(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        await self._inner.copy_in(sql, rows)

    async def reset(self) -> bool:
        """Does nothing: the framework owns the session and its transaction."""
        return False

    async def close(self) -> None:
        """Does nothing: the framework owns the session."""
