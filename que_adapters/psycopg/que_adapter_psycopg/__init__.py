"""que-core adapter for psycopg 3."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import pq

from que_core import errors, hookimpl
from que_core.connection import Notification, Row
from que_core.dsn import check_url_userinfo, mask_password


def _translate(exc: psycopg.Error, raw: psycopg.Connection[Any]) -> errors.DatabaseError:
    if isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError)) and (
        raw.broken or raw.closed or exc.sqlstate is None
    ):
        return errors.ConnectionLost(str(exc), exc.sqlstate)
    return errors.from_sqlstate(exc.sqlstate, str(exc))


class PsycopgConnection:
    """A que-core Connection over a psycopg 3 connection."""

    def __init__(self, raw: psycopg.Connection[Any], owned: bool) -> None:
        self.raw = raw
        self._owned = owned

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        try:
            cur = self.raw.execute(sql, params or None)
            # The result status, not cur.description: that builds column
            # objects, a measurable cost on the per-job path.
            result = cur.pgresult
            if result is None or result.status != pq.ExecStatus.TUPLES_OK:
                return []
            return cur.fetchall()
        except psycopg.Error as exc:
            raise _translate(exc, self.raw) from exc

    @contextmanager
    def transaction(self) -> Iterator[None]:
        try:
            with self.raw.transaction():
                yield
                # A body that swallowed a database error leaves the transaction
                # aborted; COMMIT would quietly roll back. Say so instead.
                if self.raw.info.transaction_status == pq.TransactionStatus.INERROR:
                    raise errors.DatabaseError(
                        "the transaction was aborted by an earlier error and has been "
                        "rolled back",
                        "25P02",
                    )
        except psycopg.Error as exc:
            raise _translate(exc, self.raw) from exc

    def notifications(self, timeout: float) -> list[Notification]:
        try:
            got = [
                Notification(n.channel, n.payload, n.pid)
                for n in self.raw.notifies(timeout=timeout, stop_after=1)
            ]
            if got:  # drain whatever else already arrived
                got += [
                    Notification(n.channel, n.payload, n.pid)
                    for n in self.raw.notifies(timeout=0)
                ]
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
        raw = self.raw
        # pgconn's status, not raw.info's: that builds an object per call.
        if raw.autocommit and raw.pgconn.transaction_status == pq.TransactionStatus.IDLE:
            return False
        try:
            raw.rollback()
            raw.autocommit = True
        except psycopg.Error as exc:
            raise _translate(exc, raw) from exc
        return True

    def close(self) -> None:
        if self._owned:
            self.raw.close()

    @property
    def closed(self) -> bool:
        return bool(self.raw.closed or self.raw.broken)


class PsycopgAdapter:
    name = "psycopg"

    def connect(self, dsn: str) -> PsycopgConnection:
        check_url_userinfo(dsn)
        try:
            raw = psycopg.connect(dsn, autocommit=True)
        except psycopg.ProgrammingError as exc:  # libpq could not read the DSN
            raise errors.ConfigurationError(
                f"cannot read the DSN {mask_password(dsn)}: {mask_password(str(exc))}"
            ) from None
        except psycopg.Error as exc:
            raise errors.CannotConnect(
                f"cannot connect to {mask_password(dsn)}: {mask_password(str(exc))}"
            ) from None
        return PsycopgConnection(raw, owned=True)

    def wrap(self, raw: Any) -> PsycopgConnection | None:
        if isinstance(raw, psycopg.Connection):
            return PsycopgConnection(raw, owned=False)
        return None


ADAPTER = PsycopgAdapter()


@hookimpl
def que_adapter() -> PsycopgAdapter:
    return ADAPTER


@hookimpl
def que_wrap_connection(raw: Any) -> PsycopgConnection | None:
    return ADAPTER.wrap(raw)
