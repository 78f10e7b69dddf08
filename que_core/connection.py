"""The seam between que-core and a database driver.

The core speaks only to these protocols, in two halves. An adapter package
(found through the ``que.adapters`` entry point group, see
:mod:`que_core.hookspecs`) provides one adapter object with a sync side, an
async side, or both:

* the sync side, :class:`Adapter` (``connect``, ``wrap``), opens or wraps
  driver connections as :class:`Connection` objects;
* the async side, :class:`AsyncAdapter` (``aconnect``, ``awrap``), opens or
  wraps asyncio driver connections as :class:`AsyncConnection` objects, the
  same contract with ``await``.

An adapter declares a side it lacks by not implementing it: the core checks
each protocol (:func:`que_core.plugins.get_adapter`,
:func:`~que_core.plugins.get_async_adapter`) and names the missing side in
its error, and the conformance suite counts that side's tests as
declared-unsupported.

SQL handed to :meth:`Connection.execute` uses ``%s`` positional placeholders
(DB-API "format" style) and never contains a literal ``%``. Parameter values
the core sends: ``None``, ``bool``, ``int`` (64 bit), ``float``, ``str``,
timezone-aware ``datetime``, and lists of ``int`` or ``str``. Some drivers
send parameters untyped, so core SQL casts every parameter whose type the
statement does not fix (``%s::bigint``). JSON travels as text and is cast in
SQL, so adapters need no JSON handling of their own. Several statements in
one ``execute`` are allowed only without parameters (migrations use that).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class Notification:
    """One NOTIFY received on a LISTENing connection."""

    channel: str
    payload: str
    #: Backend pid of the notifying session.
    pid: int = 0


Row = tuple[Any, ...]


@runtime_checkable
class Connection(Protocol):
    """A single database session, as the core needs it.

    Adapters raise the exceptions of :mod:`que_core.errors` (never the
    driver's own) from every method.
    """

    #: The driver's own connection object (what a job sees as ``self.conn``).
    raw: Any

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """Run one statement; return its rows (``[]`` when it returns none).

        Sessions the adapter opens are in autocommit mode: outside a
        transaction each statement commits on its own. A wrapped caller's
        connection keeps the driver's behaviour: with autocommit off the
        driver opens a transaction implicitly, the statement joins it, and
        the caller commits.
        """
        ...

    def transaction(self) -> AbstractContextManager[None]:
        """A transaction block: commit on success, roll back on exception.

        Nested blocks, and blocks opened inside a transaction the caller
        began, are savepoints. A block whose transaction was aborted by an
        error the body swallowed is rolled back and raises
        :class:`~que_core.errors.DatabaseError` (SQLSTATE 25P02) rather than
        pretending to commit.
        """
        ...

    def notifications(self, timeout: float) -> list[Notification]:
        """Return the notifications received so far, waiting up to *timeout*
        seconds for the first one when none is pending (however the driver
        can: a driver that cannot block may wait on the socket, then read)."""
        ...

    def copy_in(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """Run *sql*, a ``COPY ... FROM STDIN`` (text format), sending *rows*:
        tuples of ``None``, ``int``, ``str`` or timezone-aware ``datetime``, in
        the order of the statement's columns. Inside the caller's transaction
        as ``execute`` would be; :mod:`que_core.copying` formats rows for a
        driver that takes the data as a file."""
        ...

    def reset(self) -> bool:
        """Return a session the adapter opened to autocommit outside any
        transaction, if something left it otherwise (a job that began a
        transaction and returned, or turned autocommit off): roll back, turn
        autocommit on, and return True. Returns False, doing nothing and
        without a round trip, when the session was already so."""
        ...

    def close(self) -> None:
        """Close the session. Closing twice is harmless."""
        ...

    @property
    def closed(self) -> bool:
        """True once the session is closed or known to be broken."""
        ...


@runtime_checkable
class Adapter(Protocol):
    """The sync side of an adapter: what the worker, ``enqueue`` and the
    ``que`` command need. An async-only adapter (asyncpg) has none."""

    #: The entry point name, e.g. ``"psycopg"``.
    name: str

    def connect(self, dsn: str) -> Connection:
        """Open a new session in autocommit mode."""
        ...

    def wrap(self, raw: Any) -> Connection | None:
        """Wrap a caller's driver connection, or return None if it is not
        this driver's. The wrapper never changes the connection's
        transaction state or settings; closing the wrapper does not close
        the caller's connection."""
        ...



@runtime_checkable
class AsyncConnection(Protocol):
    """The async twin of :class:`Connection`: one database session driven
    from an asyncio event loop, with the same contract, method by method.

    SQL, parameters, results, autocommit and errors are exactly as for
    :class:`Connection`. It has no ``transaction()``: ``atransaction()``
    takes its place, so that an object is never taken for the other kind.
    """

    #: The driver's own connection object (``psycopg.AsyncConnection``,
    #: ``asyncpg.Connection``, an asyncpg pool's connection, ...).
    raw: Any

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """Run one statement; return its rows, as :meth:`Connection.execute`."""
        ...

    def atransaction(self) -> AbstractAsyncContextManager[None]:
        """An ``async with`` transaction block with the rules of
        :meth:`Connection.transaction`: commit on success, roll back on
        exception, savepoints when nested or inside the caller's transaction,
        :class:`~que_core.errors.DatabaseError` (SQLSTATE 25P02) for a block
        whose body swallowed a database error, and no rollback attempted on a
        session that is gone."""
        ...

    async def notifications(self, timeout: float) -> list[Notification]:
        """The notifications received so far, waiting up to *timeout* seconds
        for the first one when none is pending, without blocking the loop."""
        ...

    async def copy_in(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """As :meth:`Connection.copy_in`: run *sql*, a ``COPY ... FROM STDIN``,
        sending *rows* (the async bulk enqueue uses it)."""
        ...

    async def reset(self) -> bool:
        """As :meth:`Connection.reset`: back to autocommit outside any
        transaction (True), or False without a round trip when it was."""
        ...

    async def close(self) -> None:
        """Close the session. Closing twice is harmless."""
        ...

    @property
    def closed(self) -> bool:
        """True once the session is closed or known to be broken."""
        ...


@runtime_checkable
class AsyncAdapter(Protocol):
    """The async side of an adapter: what an asyncio application and the
    worker's async jobs need."""

    #: The entry point name, the same as the sync side's when it has one.
    name: str

    async def aconnect(self, dsn: str) -> AsyncConnection:
        """Open a new session in autocommit mode; the errors of
        :meth:`Adapter.connect`."""
        ...

    def awrap(self, raw: Any) -> AsyncConnection | None:
        """Wrap a caller's async driver connection, or return None if it is
        not this driver's; the rules of :meth:`Adapter.wrap`. Decides by
        type, without a round trip (so it is not a coroutine)."""
        ...
