"""pg8000-specific behaviour the driver-agnostic conformance suite cannot reach:
DSNs as keyword arguments, and wrapping each kind of pg8000 connection."""

from __future__ import annotations

import os
import ssl
from typing import Any

import pg8000
import pg8000.dbapi
import pg8000.native
import pytest
from que_adapter_pg8000 import ADAPTER, connect_args

from conformance.fixtures import URL, URL_PARTS, adapter_test_fixtures
from que_core import errors
from que_core.connection import Connection

SOCKET_DIR = "/var/run/postgresql"


dsn, other = adapter_test_fixtures(ADAPTER)  # a database with an items table, a session


def ids(conn: Connection) -> list[int]:
    return [r[0] for r in conn.execute("SELECT id FROM items ORDER BY id")]


def test_connect_args_from_a_url() -> None:
    args = connect_args(f"{URL}?application_name=w")
    assert args == {
        **URL_PARTS,
        "database": "app",
        "application_name": "w",
        "ssl_context": None,
    }


def test_connect_args_for_a_unix_socket() -> None:
    args = connect_args("dbname=app host=/run/pg port=5433 sslmode=disable options='-c x=1'")
    assert args["unix_sock"] == "/run/pg/.s.PGSQL.5433"
    assert "host" not in args
    assert args["ssl_context"] is False
    assert args["startup_params"] == {"options": "-c x=1"}


def test_connect_args_ssl_modes() -> None:
    assert connect_args("sslmode=require")["ssl_context"] is True
    context = connect_args("sslmode=verify-full")["ssl_context"]
    assert isinstance(context, ssl.SSLContext) and context.check_hostname


def test_connect_args_refuse_unknown_parameters() -> None:
    with pytest.raises(errors.ConfigurationError, match="target_session_attrs"):
        connect_args("host=h target_session_attrs=read-write")


@pytest.mark.skipif(not os.path.exists(f"{SOCKET_DIR}/.s.PGSQL.5432"), reason="no local socket")
def test_connect_through_a_unix_socket() -> None:
    try:
        conn = ADAPTER.connect(f"postgresql://postgres@/postgres?host={SOCKET_DIR}")
    except errors.CannotConnect as exc:
        pytest.skip(f"socket refused us: {exc}")
    assert conn.execute("SELECT 1") == [(1,)]
    conn.close()


def test_connect_timeout_is_only_for_connecting(dsn: str) -> None:
    conn = ADAPTER.connect(f"{dsn}{'&' if '?' in dsn else '?'}connect_timeout=1")
    assert conn.execute("SELECT 1 FROM pg_sleep(1.5)") == [(1,)]
    conn.close()


def test_wrap_dbapi_connection_joins_the_implicit_transaction(dsn: str, other: Connection) -> None:
    raw = pg8000.dbapi.connect(**connect_args(dsn))
    try:
        wrapped = ADAPTER.wrap(raw)
        assert wrapped is not None
        wrapped.execute("INSERT INTO items VALUES (1)")
        with wrapped.transaction():  # a savepoint in the caller's transaction
            wrapped.execute("INSERT INTO items VALUES (2)")
        assert raw.autocommit is False
        assert ids(other) == []
        raw.rollback()
        assert ids(other) == []
        wrapped.execute("INSERT INTO items VALUES (3)")
        raw.commit()
        assert ids(other) == [3]
    finally:
        raw.close()


def test_wrap_dbapi_autocommit_connection(dsn: str, other: Connection) -> None:
    raw = pg8000.dbapi.connect(**connect_args(dsn))
    raw.autocommit = True
    try:
        wrapped = ADAPTER.wrap(raw)
        assert wrapped is not None
        wrapped.execute("INSERT INTO items VALUES (1)")
        assert ids(other) == [1]
    finally:
        raw.close()


def test_wrap_native_connection_changes_no_settings(dsn: str, other: Connection) -> None:
    raw = pg8000.native.Connection(**connect_args(dsn))
    handlers, notifications = dict(raw.message_types), raw.notifications
    try:
        wrapped = ADAPTER.wrap(raw)
        assert wrapped is not None
        with wrapped.transaction():
            wrapped.execute("INSERT INTO items VALUES (%s)", [1])
        assert ids(other) == [1]
        assert raw.message_types == handlers and raw.notifications is notifications
        wrapped.close()
        assert raw.run("SELECT 1") == [[1]]
    finally:
        raw.close()


def test_wrap_legacy_connection(dsn: str) -> None:
    raw: Any = pg8000.connect(**connect_args(dsn))
    try:
        wrapped = ADAPTER.wrap(raw)
        assert wrapped is not None
        assert wrapped.execute("SELECT %s::int", [5]) == [(5,)]
    finally:
        raw.close()
