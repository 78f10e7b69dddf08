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
if none is), and bulk enqueues use a savepoint (``begin_nested``) rather
than a transaction of their own. A ``scoped_session`` works too. An
``Engine`` is refused: it has no transaction to join.

This module imports SQLAlchemy only when it is handed something to wrap.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from que_core.connection import Connection
from que_core.contrib._connection import FrameworkConnection
from que_core.errors import ConfigurationError
from que_core.hookspecs import hookimpl

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection as SAConnection
    from sqlalchemy.orm import Session

__all__ = ["enqueue_conn", "que_wrap_connection"]


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


@hookimpl
def que_wrap_connection(raw: Any) -> Connection | None:
    if "sqlalchemy" not in sys.modules:  # then raw cannot be one of its objects
        return None
    return _wrap(raw)


def _wrap(obj: Any) -> Connection | None:
    try:
        from sqlalchemy.engine import Connection as SAConnection
        from sqlalchemy.engine import Engine
        from sqlalchemy.orm import Session, scoped_session
    except ImportError as exc:  # pragma: no cover - only from enqueue_conn
        raise ImportError(
            "que_core.contrib.sqlalchemy needs SQLAlchemy 2 (que-core's sqlalchemy extra): "
            "pip install 'sqlalchemy>=2'"
        ) from exc

    if isinstance(obj, scoped_session):
        obj = obj()
    if isinstance(obj, Session):
        session = obj
        sa_conn = session.connection()  # begins the session's transaction if needed
        return FrameworkConnection(_driver(sa_conn), session.begin_nested, owner=session)
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


def _driver(sa_conn: SAConnection) -> Connection:
    from que_core.plugins import adapters, wrap_connection

    driver = sa_conn.connection.driver_connection
    if driver is None:  # pragma: no cover - an invalidated connection
        raise ConfigurationError("the SQLAlchemy connection has no driver connection")
    try:
        return wrap_connection(driver)
    except ConfigurationError:
        dialect = f"{sa_conn.dialect.name}+{sa_conn.dialect.driver}"
        installed = ", ".join(sorted(adapters())) or "none"
        raise ConfigurationError(
            f"no installed que-core adapter works with SQLAlchemy's {dialect} dialect "
            f"(its connections are {type(driver).__module__}.{type(driver).__qualname__}; "
            f"installed adapters: {installed}). que-core supports postgresql+psycopg, "
            f"postgresql+psycopg2 and postgresql+pg8000, each with its adapter installed."
        ) from None
