"""que-core adapter for psycopg2."""

from __future__ import annotations

import io
import select
import time
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from typing import Any

import psycopg2
import psycopg2.extensions as ext

from que_core import copying, errors
from que_core.connection import Notification, Row
from que_core.dsn import cannot_connect, cannot_read, check_url_userinfo
from que_core.hookspecs import adapter_hook, close_owned, wrapper
from que_core.transactions import Transactions, TransactionStatus

_STATUS = {
    ext.TRANSACTION_STATUS_INTRANS: TransactionStatus.IN_TRANSACTION,
    ext.TRANSACTION_STATUS_INERROR: TransactionStatus.FAILED,
}


def _translate(exc: Exception, raw: Any) -> errors.DatabaseError:
    pgcode = getattr(exc, "pgcode", None)
    message = str(exc).strip() or type(exc).__name__
    if not isinstance(exc, psycopg2.Error) or (
        isinstance(exc, (psycopg2.OperationalError, psycopg2.InterfaceError))
        and (raw.closed or pgcode is None)
    ):
        return errors.ConnectionLost(message, pgcode)
    return errors.from_sqlstate(pgcode, message)


def _param(value: Any) -> Any:
    # psycopg2 writes -5 as " -5": "%s::int" with the smallest int becomes
    # -(2147483648::int), out of range. Parenthesise negative ints.
    if type(value) is int and value < 0:
        return ext.AsIs(f"({value})")
    return value


class Psycopg2Connection:
    """A que-core Connection over a psycopg2 connection."""

    def __init__(self, raw: Any, owned: bool) -> None:
        self.raw = raw
        self._owned = owned
        # On a connection with autocommit off psycopg2 begins by itself: a
        # top-level block ends with its commit()/rollback().
        self._transactions = Transactions(
            self.execute,
            self._status,
            closed=lambda: bool(raw.closed),
            implicit=lambda: not raw.autocommit,
            commit=self._commit,
            rollback=self._rollback,
        )

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        try:
            with self.raw.cursor() as cur:
                cur.execute(sql, [_param(p) for p in params] if params else None)
                rows: list[Row] = cur.fetchall() if cur.description is not None else []
                return rows
        except psycopg2.Error as exc:
            raise _translate(exc, self.raw) from exc

    def transaction(self) -> AbstractContextManager[None]:
        return self._transactions.transaction()

    def _status(self) -> TransactionStatus:
        return _STATUS.get(self.raw.info.transaction_status, TransactionStatus.IDLE)

    def _commit(self) -> None:
        try:
            self.raw.commit()
        except psycopg2.Error as exc:
            raise _translate(exc, self.raw) from exc

    def _rollback(self) -> None:
        try:
            self.raw.rollback()
        except psycopg2.Error as exc:
            raise _translate(exc, self.raw) from exc

    def notifications(self, timeout: float) -> list[Notification]:
        raw = self.raw
        deadline = time.monotonic() + max(timeout, 0.0)
        try:
            raw.poll()
            while not raw.notifies:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                select.select([raw], [], [], remaining)
                raw.poll()
            got = [Notification(n.channel, n.payload, n.pid) for n in raw.notifies]
            del raw.notifies[:]
            return got
        except (psycopg2.Error, OSError, ValueError) as exc:
            raise _translate(exc, raw) from exc

    def copy_in(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        try:
            with self.raw.cursor() as cur:
                cur.copy_expert(sql, io.StringIO(copying.text(rows)))
        except psycopg2.Error as exc:
            raise _translate(exc, self.raw) from exc

    def reset(self) -> bool:
        raw = self.raw
        if raw.autocommit and raw.info.transaction_status == ext.TRANSACTION_STATUS_IDLE:
            return False
        try:
            if not raw.autocommit:
                raw.rollback()
                raw.autocommit = True
            # A BEGIN the job sent itself: psycopg2's rollback() does nothing
            # in autocommit mode, so say it in SQL.
            if raw.info.transaction_status != ext.TRANSACTION_STATUS_IDLE:
                with raw.cursor() as cur:
                    cur.execute("ROLLBACK")
        except psycopg2.Error as exc:
            raise _translate(exc, raw) from exc
        return True

    close = close_owned

    @property
    def closed(self) -> bool:
        return bool(self.raw.closed)


class Psycopg2Adapter:
    name = "psycopg2"

    def connect(self, dsn: str) -> Psycopg2Connection:
        check_url_userinfo(dsn)
        try:
            raw = psycopg2.connect(dsn)
            raw.autocommit = True
        except psycopg2.ProgrammingError as exc:  # libpq could not read the DSN
            raise cannot_read(dsn, str(exc).strip()) from None
        except psycopg2.Error as exc:
            raise cannot_connect(dsn, str(exc).strip()) from None
        return Psycopg2Connection(raw, owned=True)

    wrap = wrapper(ext.connection, Psycopg2Connection)


ADAPTER = Psycopg2Adapter()
que_adapter = adapter_hook(ADAPTER)

