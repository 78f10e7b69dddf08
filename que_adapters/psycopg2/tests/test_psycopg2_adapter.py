"""psycopg2-specific behaviour the driver-agnostic conformance suite cannot reach:
wrapping connections the way psycopg2 users make them (autocommit off)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg2
import psycopg2.extensions as ext
import pytest
from que_adapter_psycopg2 import ADAPTER

from que_core import errors
from que_core.connection import Connection
from que_core.testing import databases


@pytest.fixture
def dsn() -> Iterator[str]:
    with databases.temporary_database(ADAPTER) as dsn:
        conn = ADAPTER.connect(dsn)
        conn.execute("CREATE TABLE items (id bigint PRIMARY KEY)")
        conn.close()
        yield dsn


@pytest.fixture
def raw(dsn: str) -> Iterator[Any]:
    """A psycopg2 connection as users have them: autocommit off."""
    conn = psycopg2.connect(dsn)
    yield conn
    conn.close()


@pytest.fixture
def other(dsn: str) -> Iterator[Connection]:
    conn = ADAPTER.connect(dsn)
    yield conn
    conn.close()


def ids(conn: Connection) -> list[int]:
    return [r[0] for r in conn.execute("SELECT id FROM items ORDER BY id")]


def test_connect_opens_an_autocommit_connection(other: Connection) -> None:
    assert other.raw.autocommit is True


def test_wrapped_execute_joins_the_implicit_transaction(raw: Any, other: Connection) -> None:
    wrapped = ADAPTER.wrap(raw)
    assert wrapped is not None
    wrapped.execute("INSERT INTO items VALUES (1)")
    assert raw.autocommit is False
    assert raw.info.transaction_status == ext.TRANSACTION_STATUS_INTRANS
    assert ids(other) == []
    raw.rollback()
    assert ids(other) == []


def test_wrapped_transaction_in_the_callers_transaction_is_a_savepoint(
    raw: Any, other: Connection
) -> None:
    with raw.cursor() as cur:
        cur.execute("INSERT INTO items VALUES (1)")
    wrapped = ADAPTER.wrap(raw)
    assert wrapped is not None
    with wrapped.transaction():
        wrapped.execute("INSERT INTO items VALUES (2)")
    assert raw.info.transaction_status == ext.TRANSACTION_STATUS_INTRANS
    assert ids(other) == []
    raw.commit()
    assert ids(other) == [1, 2]


def test_wrapped_transaction_on_an_idle_connection_commits_the_dbapi_way(
    raw: Any, other: Connection
) -> None:
    wrapped = ADAPTER.wrap(raw)
    assert wrapped is not None
    with wrapped.transaction(), wrapped.transaction():  # nested before any statement
        wrapped.execute("INSERT INTO items VALUES (1)")
    assert ids(other) == [1]
    assert raw.autocommit is False
    assert raw.info.transaction_status == ext.TRANSACTION_STATUS_IDLE
    with raw.cursor() as cur:  # psycopg2 still begins its own transactions
        cur.execute("INSERT INTO items VALUES (2)")
    assert ids(other) == [1]
    raw.rollback()
    assert ids(other) == [1]


def test_wrapped_transaction_rolls_back_the_dbapi_way(raw: Any, other: Connection) -> None:
    wrapped = ADAPTER.wrap(raw)
    assert wrapped is not None
    with pytest.raises(errors.UniqueViolation), wrapped.transaction():
        wrapped.execute("INSERT INTO items VALUES (1)")
        wrapped.execute("INSERT INTO items VALUES (1)")
    assert raw.info.transaction_status == ext.TRANSACTION_STATUS_IDLE
    assert ids(other) == []


def test_wrap_keeps_autocommit_on(dsn: str, other: Connection) -> None:
    raw = psycopg2.connect(dsn)
    raw.autocommit = True
    try:
        wrapped = ADAPTER.wrap(raw)
        assert wrapped is not None
        with wrapped.transaction():
            wrapped.execute("INSERT INTO items VALUES (1)")
        assert raw.autocommit is True
        assert ids(other) == [1]
    finally:
        raw.close()
