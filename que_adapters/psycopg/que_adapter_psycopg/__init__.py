"""que-core adapter for psycopg 3: both sides, ``psycopg.Connection`` (sync)
and ``psycopg.AsyncConnection`` (async)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from contextlib import (
    AbstractAsyncContextManager,
    AbstractContextManager,
    asynccontextmanager,
    contextmanager,
)
from functools import cached_property
from typing import Any

import psycopg
from psycopg import pq

from que_core import errors
from que_core.connection import Notification, Row
from que_core.dsn import cannot_connect, cannot_read, check_url_userinfo
from que_core.hookspecs import adapter_hook, close_owned, wrapper
from que_core.transactions import (
    AsyncTransactions,
    Transactions,
    TransactionStatus,
    aborted,
)

Raw = psycopg.Connection[Any] | psycopg.AsyncConnection[Any]


def _translate(exc: psycopg.Error, raw: Raw) -> errors.DatabaseError:
    if isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError)) and (
        raw.broken or raw.closed or exc.sqlstate is None
    ):
        return errors.ConnectionLost(str(exc), exc.sqlstate)
    return errors.from_sqlstate(exc.sqlstate, str(exc))


def _rows(cur: psycopg.Cursor[Any] | psycopg.AsyncCursor[Any]) -> bool:
    # The result status, not cur.description: that builds column objects, a
    # measurable cost on the per-job path.
    result = cur.pgresult
    return result is not None and result.status == pq.ExecStatus.TUPLES_OK


def _failed(raw: Raw) -> bool:
    # A body that swallowed a database error leaves the transaction aborted;
    # COMMIT would quietly roll back. Say so instead.
    return raw.pgconn.transaction_status == pq.TransactionStatus.INERROR


def _joins(raw: Raw, owned: bool) -> bool:
    """Whether a block must be a savepoint in the caller's transaction that
    psycopg begins before the next statement (a caller's connection with
    autocommit off, idle): ``raw.transaction()`` would BEGIN and COMMIT one
    of its own, committing the job before the caller does."""
    idle = raw.pgconn.transaction_status == pq.TransactionStatus.IDLE
    return not owned and not raw.autocommit and idle


def _in_callers_transaction() -> TransactionStatus:
    return TransactionStatus.IN_TRANSACTION


def _needs_reset(raw: Raw) -> bool:
    # pgconn's status, not raw.info's: that builds an object per call.
    return not (raw.autocommit and raw.pgconn.transaction_status == pq.TransactionStatus.IDLE)


def _notification(n: psycopg.Notify) -> Notification:
    return Notification(n.channel, n.payload, n.pid)


def _cannot_connect(dsn: str, exc: psycopg.Error) -> errors.QueError:
    if isinstance(exc, psycopg.ProgrammingError):  # libpq could not read the DSN
        return cannot_read(dsn, str(exc))
    return cannot_connect(dsn, str(exc))


class PsycopgConnection:
    """A que-core Connection over a psycopg 3 connection."""

    def __init__(self, raw: psycopg.Connection[Any], owned: bool) -> None:
        self.raw = raw
        self._owned = owned

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        try:
            cur = self.raw.execute(sql, params or None)
            return cur.fetchall() if _rows(cur) else []
        except psycopg.Error as exc:
            raise _translate(exc, self.raw) from exc

    def transaction(self) -> AbstractContextManager[None]:
        if _joins(self.raw, self._owned):
            return self._joined.transaction()
        return self._transaction()

    @cached_property
    def _joined(self) -> Transactions:
        """The blocks inside the caller's transaction (made when first needed:
        wrap is per enqueue)."""
        return Transactions(self.execute, _in_callers_transaction)

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        try:
            with self.raw.transaction():
                yield
                if _failed(self.raw):
                    raise aborted()
        except psycopg.Error as exc:
            raise _translate(exc, self.raw) from exc

    def notifications(self, timeout: float) -> list[Notification]:
        try:
            got = [_notification(n) for n in self.raw.notifies(timeout=timeout, stop_after=1)]
            if got:  # drain whatever else already arrived
                got += [_notification(n) for n in self.raw.notifies(timeout=0)]
            return got
        except psycopg.Error as exc:
            raise _translate(exc, self.raw) from exc

    def copy_in(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        try:
            with self.raw.cursor() as cur, cur.copy(sql) as copy:
                for row in rows:
                    copy.write_row(row)
        except psycopg.Error as exc:
            raise _translate(exc, self.raw) from exc

    def reset(self) -> bool:
        if not _needs_reset(self.raw):
            return False
        try:
            self.raw.rollback()
            self.raw.autocommit = True
        except psycopg.Error as exc:
            raise _translate(exc, self.raw) from exc
        return True

    close = close_owned

    @property
    def closed(self) -> bool:
        return bool(self.raw.closed or self.raw.broken)


class AsyncPsycopgConnection:
    """A que-core AsyncConnection over a ``psycopg.AsyncConnection``."""

    def __init__(self, raw: psycopg.AsyncConnection[Any], owned: bool) -> None:
        self.raw = raw
        self._owned = owned

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        try:
            cur = await self.raw.execute(sql, params or None)
            return await cur.fetchall() if _rows(cur) else []
        except psycopg.Error as exc:
            raise _translate(exc, self.raw) from exc

    def atransaction(self) -> AbstractAsyncContextManager[None]:
        if _joins(self.raw, self._owned):
            return self._joined.atransaction()
        return self._atransaction()

    @cached_property
    def _joined(self) -> AsyncTransactions:
        return AsyncTransactions(self.execute, _in_callers_transaction)

    @asynccontextmanager
    async def _atransaction(self) -> AsyncIterator[None]:
        try:
            async with self.raw.transaction():
                yield
                if _failed(self.raw):
                    raise aborted()
        except psycopg.Error as exc:
            raise _translate(exc, self.raw) from exc

    async def notifications(self, timeout: float) -> list[Notification]:
        try:
            got = [
                _notification(n)
                async for n in self.raw.notifies(timeout=timeout, stop_after=1)
            ]
            if got:
                got += [_notification(n) async for n in self.raw.notifies(timeout=0)]
            return got
        except psycopg.Error as exc:
            raise _translate(exc, self.raw) from exc

    async def copy_in(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        try:
            async with self.raw.cursor() as cur, cur.copy(sql) as copy:
                for row in rows:
                    await copy.write_row(row)
        except psycopg.Error as exc:
            raise _translate(exc, self.raw) from exc

    async def reset(self) -> bool:
        if not _needs_reset(self.raw):
            return False
        try:
            await self.raw.rollback()
            await self.raw.set_autocommit(True)
        except psycopg.Error as exc:
            raise _translate(exc, self.raw) from exc
        return True

    async def close(self) -> None:
        if self._owned:
            await self.raw.close()

    @property
    def closed(self) -> bool:
        return bool(self.raw.closed or self.raw.broken)


class PsycopgAdapter:
    name = "psycopg"

    def connect(self, dsn: str) -> PsycopgConnection:
        check_url_userinfo(dsn)
        try:
            raw = psycopg.connect(dsn, autocommit=True)
        except psycopg.Error as exc:
            raise _cannot_connect(dsn, exc) from None
        return PsycopgConnection(raw, owned=True)

    wrap = wrapper(psycopg.Connection, PsycopgConnection)

    async def aconnect(self, dsn: str) -> AsyncPsycopgConnection:
        check_url_userinfo(dsn)
        try:
            raw = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
        except psycopg.Error as exc:
            raise _cannot_connect(dsn, exc) from None
        return AsyncPsycopgConnection(raw, owned=True)

    awrap = wrapper(psycopg.AsyncConnection, AsyncPsycopgConnection)


ADAPTER = PsycopgAdapter()
que_adapter = adapter_hook(ADAPTER)

