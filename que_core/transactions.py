"""Transaction blocks for adapters whose driver has none of its own.

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
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

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


class Transactions:
    """Runs the ``transaction()`` blocks of one connection wrapper.

    :param execute: runs one statement (without parameters) on the session,
        raising :mod:`que_core.errors` exceptions; a statement it is given may
        be two (``ROLLBACK TO SAVEPOINT s; RELEASE SAVEPOINT s``).
    :param status: where the session is now (see :class:`TransactionStatus`).
    :param closed: true when the session is closed: a block then raises
        :class:`~que_core.errors.ConnectionLost` before doing anything.
    :param implicit: true when the driver begins a transaction by itself
        before the next statement (a DB-API connection with autocommit off).
        A top-level block then sends no ``BEGIN`` and ends with *commit* or
        *rollback* (the driver's own, raising :mod:`que_core.errors`
        exceptions), so that the driver's bookkeeping stays right. Without
        *implicit* every block uses SQL.
    """

    def __init__(
        self,
        execute: Callable[[str], Any],
        status: Callable[[], TransactionStatus],
        *,
        closed: Callable[[], bool] | None = None,
        implicit: Callable[[], bool] | None = None,
        commit: Callable[[], Any] | None = None,
        rollback: Callable[[], Any] | None = None,
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

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """A transaction block: see :meth:`que_core.connection.Connection.transaction`."""
        if self._closed is not None and self._closed():
            raise errors.ConnectionLost("the connection is closed")
        top_level, end = self._begin()
        self._depth += 1
        try:
            yield
        except BaseException:
            self._depth -= 1
            with suppress(errors.ConnectionLost):  # gone, and its transaction with it
                end(False)
            raise
        self._depth -= 1
        if top_level and self._status() is TransactionStatus.FAILED:
            end(False)  # COMMIT would roll back silently: say so
            raise aborted()
        try:
            end(True)
        except errors.ConnectionLost:
            raise
        except errors.DatabaseError:
            with suppress(errors.DatabaseError):
                end(False)
            raise

    def _begin(self) -> tuple[bool, Callable[[bool], None]]:
        """Open the block; return whether it is a top-level transaction and
        the function that ends it (``end(commit)``)."""
        if self._depth or self._status() is not TransactionStatus.IDLE:
            self._savepoints += 1
            name = f"que_savepoint_{self._savepoints}"  # nested: a savepoint
            self._execute(f"SAVEPOINT {name}")

            def release(commit: bool) -> None:
                if commit:
                    self._execute(f"RELEASE SAVEPOINT {name}")
                else:
                    self._execute(f"ROLLBACK TO SAVEPOINT {name}; RELEASE SAVEPOINT {name}")

            return False, release
        if self._implicit is not None and self._implicit():
            commit, rollback = self._commit, self._rollback
            assert commit is not None and rollback is not None

            def finish(ok: bool) -> None:  # the driver began it on its own
                if ok:
                    commit()
                else:
                    rollback()

            return True, finish
        self._execute("BEGIN")
        return True, lambda ok: self._execute("COMMIT" if ok else "ROLLBACK")
