"""que-core adapter for psycopg2."""

from __future__ import annotations

import select
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any

import psycopg2
import psycopg2.extensions as ext

from que_core import errors, hookimpl
from que_core.connection import Notification, Row
from que_core.dsn import mask_password

_FAILED = ext.TRANSACTION_STATUS_INERROR
_IN_TRANSACTION = (ext.TRANSACTION_STATUS_INTRANS, _FAILED)


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
        self._depth = 0  # transaction() blocks open on this wrapper
        self._savepoints = 0

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        try:
            with self.raw.cursor() as cur:
                cur.execute(sql, [_param(p) for p in params] if params else None)
                rows: list[Row] = cur.fetchall() if cur.description is not None else []
                return rows
        except psycopg2.Error as exc:
            raise _translate(exc, self.raw) from exc

    @contextmanager
    def transaction(self) -> Iterator[None]:
        raw = self.raw
        if raw.closed:
            raise errors.ConnectionLost("the connection is closed")
        if self._depth or raw.info.transaction_status in _IN_TRANSACTION:
            self._savepoints += 1
            how = f"que_savepoint_{self._savepoints}"  # nested: a savepoint
            self.execute(f"SAVEPOINT {how}")
        elif raw.autocommit:
            how = "sql"
            self.execute("BEGIN")
        else:
            how = "dbapi"  # psycopg2 begins by itself; end with commit()/rollback()
        self._depth += 1
        try:
            yield
        except BaseException:
            self._depth -= 1
            with suppress(errors.ConnectionLost):  # gone, and its transaction with it
                self._end(how, commit=False)
            raise
        self._depth -= 1
        if how in ("sql", "dbapi") and raw.info.transaction_status == _FAILED:
            self._end(how, commit=False)  # COMMIT would roll back silently: say so
            raise errors.DatabaseError(
                "the transaction was aborted by an earlier error and has been rolled back",
                "25P02",
            )
        try:
            self._end(how, commit=True)
        except errors.ConnectionLost:
            raise
        except errors.DatabaseError:
            with suppress(errors.DatabaseError):
                self._end(how, commit=False)
            raise

    def _end(self, how: str, commit: bool) -> None:
        if how == "dbapi":
            try:
                if commit:
                    self.raw.commit()
                else:
                    self.raw.rollback()
            except psycopg2.Error as exc:
                raise _translate(exc, self.raw) from exc
        elif how == "sql":
            self.execute("COMMIT" if commit else "ROLLBACK")
        elif commit:
            self.execute(f"RELEASE SAVEPOINT {how}")
        else:
            self.execute(f"ROLLBACK TO SAVEPOINT {how}; RELEASE SAVEPOINT {how}")

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

    def close(self) -> None:
        if self._owned:
            self.raw.close()

    @property
    def closed(self) -> bool:
        return bool(self.raw.closed)


class Psycopg2Adapter:
    name = "psycopg2"
    blocking_notifications = True

    def connect(self, dsn: str) -> Psycopg2Connection:
        try:
            raw = psycopg2.connect(dsn)
            raw.autocommit = True
        except psycopg2.Error as exc:
            raise errors.CannotConnect(
                f"cannot connect to {mask_password(dsn)}: {mask_password(str(exc).strip())}"
            ) from None
        return Psycopg2Connection(raw, owned=True)

    def wrap(self, raw: Any) -> Psycopg2Connection | None:
        if isinstance(raw, ext.connection):
            return Psycopg2Connection(raw, owned=False)
        return None


ADAPTER = Psycopg2Adapter()


@hookimpl
def que_adapter() -> Psycopg2Adapter:
    return ADAPTER


@hookimpl
def que_wrap_connection(raw: Any) -> Psycopg2Connection | None:
    return ADAPTER.wrap(raw)
