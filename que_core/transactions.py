"""Transaction blocks for adapters whose driver has none of its own, sync or async.

:meth:`Connection.transaction() <que_core.connection.Connection.transaction>`
has the same rules for every adapter: ``BEGIN``/``COMMIT``/``ROLLBACK`` at the
top level, savepoints when nested or when the caller's raw connection is
already in a transaction, an aborted transaction raising
:class:`~que_core.errors.DatabaseError` (SQLSTATE 25P02) instead of committing,
and a lost connection's rollback left alone. A driver with a transaction
context manager (psycopg 3) gets them from it; an adapter for one without
creates a :class:`Transactions` per connection wrapper and hands its
``transaction()`` out::

    class MyConnection:
        def __init__(self, raw):
            self.raw = raw
            self._transactions = Transactions(self.execute, self._status)

        def transaction(self):
            return self._transactions.transaction()

        def _status(self):  # from the driver's view of the session
            return TransactionStatus.FAILED if ... else ...

An async adapter does the same with :class:`AsyncTransactions` (its
*execute*, *commit* and *rollback* are coroutine functions; *status*,
*closed* and *implicit* stay plain functions: they read the driver's state
without a round trip) and hands out ``atransaction()``. Both run the same
decisions (:class:`_Blocks`): only the waiting differs.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from que_core import errors

ABORTED_MESSAGE = "the transaction was aborted by an earlier error and has been rolled back"


class TransactionStatus(enum.Enum):
    """Where the raw connection's session is, as its driver reports it."""

    #: Not in a transaction block.
    IDLE = "idle"
    #: In a transaction block that can still commit.
    IN_TRANSACTION = "in transaction"
    #: In a transaction block that an error aborted: COMMIT would roll it back.
    FAILED = "failed"


def aborted() -> errors.DatabaseError:
    """The error of a transaction block whose transaction an earlier error
    aborted (its body swallowed a database error): it was rolled back."""
    return errors.DatabaseError(ABORTED_MESSAGE, "25P02")


R = TypeVar("R")  # what the adapter's statement functions return: a value, or an awaitable


@dataclass(frozen=True)
class _Block:
    """How one block begins and ends: SQL to send, or None for the driver's
    own ``commit()``/``rollback()`` (a block whose transaction the driver
    began implicitly has no *begin*)."""

    top_level: bool
    begin: str | None
    commit: str | None
    rollback: str | None


class _Blocks(Generic[R]):
    """The state and decisions :class:`Transactions` and
    :class:`AsyncTransactions` share; their ``R`` is what *execute*,
    *commit* and *rollback* return (an awaitable for the async one)."""

    def __init__(
        self,
        execute: Callable[[str], R],
        status: Callable[[], TransactionStatus],
        *,
        closed: Callable[[], bool] | None = None,
        implicit: Callable[[], bool] | None = None,
        commit: Callable[[], R] | None = None,
        rollback: Callable[[], R] | None = None,
    ) -> None:
        if implicit is not None and (commit is None or rollback is None):
            raise TypeError("implicit transactions need the driver's commit and rollback")
        self._execute = execute
        self._status = status
        self._closed = closed
        self._implicit = implicit
        self._commit = commit
        self._rollback = rollback
        self._depth = 0  # blocks open on this wrapper
        self._savepoints = 0  # savepoints named so far

    def _open(self) -> _Block:
        """Decide how the next block runs (raising first if the session is gone)."""
        if self._closed is not None and self._closed():
            raise errors.ConnectionLost("the connection is closed")
        if self._depth or self._status() is not TransactionStatus.IDLE:
            self._savepoints += 1
            name = f"que_savepoint_{self._savepoints}"  # nested: a savepoint
            return _Block(
                False,
                f"SAVEPOINT {name}",
                f"RELEASE SAVEPOINT {name}",
                f"ROLLBACK TO SAVEPOINT {name}; RELEASE SAVEPOINT {name}",
            )
        if self._implicit is not None and self._implicit():
            return _Block(True, None, None, None)  # the driver begins it on its own
        return _Block(True, "BEGIN", "COMMIT", "ROLLBACK")

    def _step(self, sql: str | None, commit: bool) -> R:
        """Send *sql*, or call the driver's commit or rollback when it is None."""
        if sql is not None:
            return self._execute(sql)
        driver = self._commit if commit else self._rollback
        assert driver is not None
        return driver()

    def _aborted_at_end(self, block: _Block) -> bool:
        """Whether a top-level block's body left its transaction aborted:
        COMMIT would roll back silently, so the block raises :func:`aborted`."""
        return block.top_level and self._status() is TransactionStatus.FAILED


class Transactions(_Blocks[Any]):
    """Runs the ``transaction()`` blocks of one connection wrapper.

    :param execute: runs one statement (without parameters) on the session,
        raising :mod:`que_core.errors` exceptions; a statement it is given may
        be two (``ROLLBACK TO SAVEPOINT s; RELEASE SAVEPOINT s``).
    :param closed: true when the session is closed: a block then raises
        :class:`~que_core.errors.ConnectionLost` before doing anything.
    :param status: where the session is now (see :class:`TransactionStatus`).
        A caller's connection with autocommit off that is idle counts as
        ``IN_TRANSACTION``: the driver begins the caller's transaction before
        the next statement, so a block is a savepoint in it and the caller
        commits (a BEGIN/COMMIT of its own would commit the caller's earlier
        work, or its own, early).
    :param implicit: true when the driver begins a transaction by itself
        before the next statement (a DB-API connection with autocommit off).
        A top-level block then sends no ``BEGIN`` and ends with *commit* or
        *rollback* (the driver's own, raising :mod:`que_core.errors`
        exceptions), so that the driver's bookkeeping stays right. Without
        *implicit* every block uses SQL.
    """

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """A transaction block: see :meth:`que_core.connection.Connection.transaction`."""
        block = self._open()
        if block.begin is not None:
            self._execute(block.begin)
        self._depth += 1
        try:
            yield
        except BaseException:
            self._depth -= 1
            with suppress(errors.ConnectionLost):  # gone, and its transaction with it
                self._step(block.rollback, False)
            raise
        self._depth -= 1
        if self._aborted_at_end(block):
            self._step(block.rollback, False)
            raise aborted()
        try:
            self._step(block.commit, True)
        except errors.ConnectionLost:
            raise
        except errors.DatabaseError:
            with suppress(errors.DatabaseError):
                self._step(block.rollback, False)
            raise


class AsyncTransactions(_Blocks[Awaitable[Any]]):
    """Runs the ``atransaction()`` blocks of one async connection wrapper:
    the parameters of :class:`Transactions`, with *execute*, *commit* and
    *rollback* coroutine functions. A driver that cannot tell that a
    transaction failed (*status* never says ``FAILED``) makes its COMMIT
    raise :func:`aborted` when the server answers it with ROLLBACK."""

    @asynccontextmanager
    async def atransaction(self) -> AsyncIterator[None]:
        """A transaction block: see
        :meth:`que_core.connection.AsyncConnection.atransaction`."""
        block = self._open()
        if block.begin is not None:
            await self._execute(block.begin)
        self._depth += 1
        try:
            yield
        except BaseException:
            self._depth -= 1
            with suppress(errors.ConnectionLost):
                await self._step(block.rollback, False)
            raise
        self._depth -= 1
        if self._aborted_at_end(block):
            await self._step(block.rollback, False)
            raise aborted()
        try:
            await self._step(block.commit, True)
        except errors.ConnectionLost:
            raise
        except errors.DatabaseError:
            with suppress(errors.DatabaseError):
                await self._step(block.rollback, False)
            raise
