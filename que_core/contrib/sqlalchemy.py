"""Enqueue with a SQLAlchemy 2 ``Session`` or ``Connection``, in its transaction.

Installed with que-core (entry point ``que.plugins``), so once SQLAlchemy is
imported ``enqueue`` accepts its objects directly::

    with Session(engine) as session, session.begin():
        session.add(order)
        SendReceipt.enqueue(order.id, conn=session)   # commits with the order

It works for the ``postgresql+psycopg``, ``postgresql+psycopg2`` and
``postgresql+pg8000`` dialects alike: the adapter is found from the driver
connection under SQLAlchemy's (so that adapter must be installed). The job
joins the transaction SQLAlchemy has open on that connection (one is begun
if none is), and bulk enqueues use a savepoint (the connection's
``begin_nested``) rather than a transaction of their own. A ``scoped_session`` works too. An
``Engine`` is refused: it has no transaction to join.

``aenqueue`` takes an ``AsyncSession`` (or ``async_scoped_session``) or an
``AsyncConnection`` the same way, on the ``postgresql+psycopg`` and
``postgresql+asyncpg`` dialects (SQLAlchemy's asyncio extension needs
greenlet: ``pip install 'sqlalchemy[asyncio]'``)::

    async with AsyncSession(engine) as session, session.begin():
        session.add(order)
        await SendReceipt.aenqueue(order.id, conn=session)

SQLAlchemy's asyncpg dialect sends ``BEGIN`` only before its first statement;
when the job would come first, a ``SELECT 1`` through SQLAlchemy begins the
transaction, so the job joins it rather than committing on its own.

This module imports SQLAlchemy only when it is handed something to wrap.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from que_core.connection import AsyncConnection, Connection
from que_core.contrib._connection import AsyncFrameworkConnection, FrameworkConnection
from que_core.errors import ConfigurationError
from que_core.hookspecs import hookimpl
from que_core.sql import q

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from sqlalchemy.engine import Connection as SAConnection
    from sqlalchemy.ext.asyncio import AsyncConnection as SAAsyncConnection
    from sqlalchemy.ext.asyncio import AsyncSession
    from sqlalchemy.orm import Session

__all__ = ["aenqueue_conn", "enqueue_conn", "que_awrap_connection", "que_wrap_connection"]


def enqueue_conn(session_or_connection: Session | SAConnection | Any) -> Connection:
    """A que-core Connection in the transaction of a SQLAlchemy ``Session``
    (or ``scoped_session``) or ``Connection``. ``enqueue(conn=...)`` calls
    this for you; use it to run your own statements with que-core's API."""
    wrapped = _wrap(session_or_connection)
    if wrapped is None:
        raise ConfigurationError(
            f"expected a SQLAlchemy Session or Connection, not "
            f"{type(session_or_connection).__module__}.{type(session_or_connection).__qualname__}"
        )
    return wrapped


async def aenqueue_conn(
    session_or_connection: AsyncSession | SAAsyncConnection | Any,
) -> AsyncConnection:
    """:func:`enqueue_conn` for an ``AsyncSession`` (or ``async_scoped_session``)
    or ``AsyncConnection``: a que-core AsyncConnection in its transaction."""
    wrapping = _awrap(session_or_connection)
    if wrapping is None:
        raise ConfigurationError(
            f"expected a SQLAlchemy AsyncSession or AsyncConnection, not "
            f"{type(session_or_connection).__module__}."
            f"{type(session_or_connection).__qualname__}"
        )
    return await wrapping


@hookimpl
def que_wrap_connection(raw: Any) -> Connection | None:
    if "sqlalchemy" not in sys.modules:  # then raw cannot be one of its objects
        return None
    return _wrap(raw)


@hookimpl
def que_awrap_connection(raw: Any) -> Awaitable[AsyncConnection] | None:
    if "sqlalchemy" not in sys.modules:
        return None
    return _awrap(raw)


@contextmanager
def _needs(what: str, requirement: str) -> Iterator[None]:
    """Imports of SQLAlchemy's that fail say what to install."""
    try:
        yield
    except ImportError as exc:  # pragma: no cover - only from (a)enqueue_conn
        raise ImportError(
            f"que_core.contrib.sqlalchemy needs {what}: pip install '{requirement}'"
        ) from exc


def _wrap(obj: Any) -> Connection | None:
    with _needs("SQLAlchemy 2 (que-core's sqlalchemy extra)", "sqlalchemy>=2"):
        from sqlalchemy.engine import Connection as SAConnection
        from sqlalchemy.engine import Engine
        from sqlalchemy.orm import Session, scoped_session

    if isinstance(obj, scoped_session):
        obj = obj()
    if isinstance(obj, Session):
        session = obj
        sa_conn = session.connection()  # begins the session's transaction if needed
        # The Connection's begin_nested, not the Session's: that one sends its
        # SAVEPOINT only before the Session's next statement, which ours are not.
        return FrameworkConnection(_driver(sa_conn), sa_conn.begin_nested, owner=session)
    if isinstance(obj, SAConnection):
        sa_conn = obj
        if sa_conn.closed:
            raise ConfigurationError("the SQLAlchemy Connection is closed")
        if not sa_conn.in_transaction():
            # What SQLAlchemy's autobegin does on a first execute: our statements
            # bypass it, and commit() commits only a transaction it knows of.
            sa_conn.begin()
        return FrameworkConnection(_driver(sa_conn), sa_conn.begin_nested, owner=sa_conn)
    if isinstance(obj, Engine):
        raise ConfigurationError(
            "enqueue needs a SQLAlchemy Session or Connection, not an Engine: an Engine "
            "has no transaction for the job to join (use `with engine.begin() as conn:`)"
        )
    return None


def _awrap(obj: Any) -> Awaitable[AsyncConnection] | None:
    """The async twin of :func:`_wrap`: decides by type at once, wraps when awaited."""
    with _needs("SQLAlchemy 2 with its asyncio extension", "sqlalchemy[asyncio]>=2"):
        from sqlalchemy.engine import Connection as SAConnection
        from sqlalchemy.ext.asyncio import AsyncConnection as SAAsyncConnection
        from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_scoped_session
        from sqlalchemy.orm import Session, scoped_session

    if isinstance(obj, async_scoped_session):
        obj = obj()
    if isinstance(obj, AsyncSession):
        return _session(obj)
    if isinstance(obj, SAAsyncConnection):
        return _async_connection(obj)
    if isinstance(obj, AsyncEngine):
        raise ConfigurationError(
            "aenqueue needs a SQLAlchemy AsyncSession or AsyncConnection, not an AsyncEngine: "
            "an engine has no transaction for the job to join "
            "(use `async with engine.begin() as conn:`)"
        )
    if isinstance(obj, (Session, scoped_session, SAConnection)):
        raise ConfigurationError(
            f"a SQLAlchemy {type(obj).__name__} is sync: enqueue takes it, aenqueue takes "
            "an AsyncSession or AsyncConnection"
        )
    return None


async def _session(session: AsyncSession) -> AsyncConnection:
    sa_conn = await session.connection()  # begins the session's transaction if needed
    inner = await _adriver(sa_conn)
    return AsyncFrameworkConnection(inner, sa_conn.begin_nested, owner=session)


async def _async_connection(sa_conn: SAAsyncConnection) -> AsyncConnection:
    if sa_conn.closed:
        raise ConfigurationError("the SQLAlchemy AsyncConnection is closed")
    if not sa_conn.in_transaction():
        await sa_conn.begin()  # as for a sync Connection: SQLAlchemy's autobegin
    inner = await _adriver(sa_conn)
    return AsyncFrameworkConnection(inner, sa_conn.begin_nested, owner=sa_conn)


async def _adriver(sa_conn: SAAsyncConnection) -> AsyncConnection:
    from que_core.plugins import awrap_connection

    fairy = await sa_conn.get_raw_connection()
    driver = fairy.driver_connection
    if driver is None:  # pragma: no cover - an invalidated connection
        raise ConfigurationError("the SQLAlchemy connection has no driver connection")
    if sa_conn.dialect.driver == "asyncpg" and not driver.is_in_transaction():
        # The dialect begins lazily, before its own first statement: begin now,
        # through SQLAlchemy, so that the job joins the transaction it commits.
        await sa_conn.exec_driver_sql(q("ping"))
    try:
        return await awrap_connection(driver)
    except ConfigurationError:
        raise _unsupported(sa_conn, driver, "postgresql+psycopg and postgresql+asyncpg") from None


def _driver(sa_conn: SAConnection) -> Connection:
    from que_core.plugins import wrap_connection

    driver = sa_conn.connection.driver_connection
    if driver is None:  # pragma: no cover - an invalidated connection
        raise ConfigurationError("the SQLAlchemy connection has no driver connection")
    try:
        return wrap_connection(driver)
    except ConfigurationError:
        supported = "postgresql+psycopg, postgresql+psycopg2 and postgresql+pg8000"
        raise _unsupported(sa_conn, driver, supported) from None


def _unsupported(sa_conn: Any, driver: Any, supported: str) -> ConfigurationError:
    from que_core.plugins import installed_adapters

    dialect = f"{sa_conn.dialect.name}+{sa_conn.dialect.driver}"
    installed = ", ".join(sorted(installed_adapters())) or "none"
    return ConfigurationError(
        f"no installed que-core adapter works with SQLAlchemy's {dialect} dialect "
        f"(its connections are {type(driver).__module__}.{type(driver).__qualname__}; "
        f"installed adapters: {installed}). que-core supports {supported}, "
        f"each with its adapter installed."
    )
