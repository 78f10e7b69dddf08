"""Fixtures and helpers of the conformance suite.

The fixtures build on those the host provides: ``adapter``,
``async_adapter`` and ``server_dsn`` (see :mod:`conformance`). Every test gets
a database of its own, created on the server and dropped after it. The async
fixtures and helpers (``aconnect``, ``ascalar``, ...) mirror the sync ones.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import suppress
from typing import Any, TypeVar

import pytest
import pytest_asyncio

from que_core.connection import (
    Adapter,
    AsyncAdapter,
    AsyncConnection,
    Connection,
    Notification,
    Row,
)
from que_core.testing import databases

T = TypeVar("T")

#: A wait for notifications returns no later than its timeout plus this.
WAIT_SLACK = 0.5
#: ... and no earlier than its timeout minus this.
WAIT_EARLY = 0.05
#: A notification reaches a listener within this many seconds of its commit.
LATENCY_BOUND = 0.5
#: How often a test polls an adapter whose notifications() cannot block
#: (what the core does for such an adapter, at a shorter interval).
POLL_INTERVAL = 0.01


@pytest.fixture
def db_dsn(adapter: Adapter, server_dsn: str) -> Iterator[str]:
    """The DSN of an empty database of this test's own (emptied after it)."""
    with databases.temporary_database(adapter, server_dsn) as dsn:
        yield dsn


@pytest.fixture
def connect(adapter: Adapter, db_dsn: str) -> Iterator[Callable[[], Connection]]:
    """Open another session on the test's database; all closed after the test."""
    opened: list[Connection] = []

    def open_session() -> Connection:
        conn = adapter.connect(db_dsn)
        opened.append(conn)
        return conn

    yield open_session
    for conn in opened:
        with suppress(Exception):  # a test may have broken it on purpose
            conn.close()


@pytest.fixture
def conn(connect: Callable[[], Connection]) -> Connection:
    """A session on the test's database."""
    return connect()


@pytest.fixture
def adb_dsn(async_adapter: AsyncAdapter, server_dsn: str) -> Iterator[str]:
    """:func:`db_dsn` for the async tests (made through the sync side, or
    through the async one on an event loop of its own when there is none)."""
    with databases.temporary_database(async_adapter, server_dsn) as dsn:
        yield dsn


AConnect = Callable[[], Awaitable[AsyncConnection]]


@pytest_asyncio.fixture
async def aconnect(async_adapter: AsyncAdapter, adb_dsn: str) -> AsyncIterator[AConnect]:
    """Open another async session on the test's database; all closed after the test."""
    opened: list[AsyncConnection] = []

    async def open_session() -> AsyncConnection:
        conn = await async_adapter.aconnect(adb_dsn)
        opened.append(conn)
        return conn

    yield open_session
    for conn in opened:
        with suppress(Exception):
            await conn.close()


@pytest_asyncio.fixture
async def aconn(aconnect: AConnect) -> AsyncConnection:
    """An async session on the test's database."""
    return await aconnect()


def _one(rows: Sequence[Row]) -> Any:
    assert len(rows) <= 1 and all(len(row) == 1 for row in rows), rows
    return rows[0][0] if rows else None


def scalar(conn: Connection, sql: str, *params: Any) -> Any:
    """The one column of the one row *sql* returns (None when it returns no row;
    more rows or columns fail the test). The kit of tests/ and conformance/."""
    return _one(conn.execute(sql, params))


def wait_until(predicate: Callable[[], T], within: float = 10.0, interval: float = 0.02,
               what: str = "condition") -> T:
    """Poll *predicate* until it is truthy and return that; fail after *within* seconds."""
    deadline = time.monotonic() + within
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {within:g}s")
        time.sleep(interval)


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on (just now)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def backend_pid(conn: Connection) -> int:
    return int(scalar(conn, "SELECT pg_backend_pid()"))


def terminate(victim: Connection, other: Connection) -> None:
    """End *victim*'s server process from the session *other*; wait until it is gone."""
    pid = backend_pid(victim)
    assert scalar(other, "SELECT pg_terminate_backend(%s::int)", pid) is True
    wait_until(
        lambda: not other.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s::int", [pid])
    )


def _waits(within: float) -> Iterator[float]:
    """Timeouts of a second at most, until *within* seconds have passed."""
    deadline = time.monotonic() + within
    while (remaining := deadline - time.monotonic()) > 0:
        yield min(remaining, 1.0)


def collect(listener: Connection, count: int, within: float = 10.0) -> list[Notification]:
    """Receive notifications on *listener* until *count* came or *within* seconds
    passed."""
    got: list[Notification] = []
    for timeout in _waits(within):
        if len(got) >= count:
            break
        got += listener.notifications(timeout)
    return got


def missing_database(db_dsn: str, password: str) -> str:
    """A DSN of a database that does not exist on *db_dsn*'s server, with *password*
    in it (URL or key/value form, as *db_dsn* is)."""
    missing = databases.with_database(db_dsn, "que_conformance_no_such_database")
    if "://" in missing:
        return f"{missing}{'&' if '?' in missing else '?'}password={password}"
    return f"{missing} password={password}"


#: A URL of every part, for the tests of what parses DSNs (``parse_dsn``, the
#: adapters' ``connect_args``), and what its parts come to as keyword arguments;
#: the database's name is left out: each driver names that argument its own way.
URL = "postgresql://bob:pw@db.example:6543/app"
URL_PARTS: dict[str, Any] = {"user": "bob", "password": "pw", "host": "db.example", "port": 6543}


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# -- the async twins ---------------------------------------------------------------


async def ascalar(conn: AsyncConnection, sql: str, *params: Any) -> Any:
    """:func:`scalar` on an async connection."""
    return _one(await conn.execute(sql, params))


async def await_until(predicate: Callable[[], Awaitable[T]], within: float = 10.0) -> T:
    """Poll the coroutine function *predicate* until its value is truthy."""
    deadline = time.monotonic() + within
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within}s")
        await asyncio.sleep(0.02)


async def abackend_pid(conn: AsyncConnection) -> int:
    return int(await ascalar(conn, "SELECT pg_backend_pid()"))


async def aterminate(victim: AsyncConnection, other: AsyncConnection) -> None:
    """End *victim*'s server process from the session *other*; wait until it is gone."""
    pid = await abackend_pid(victim)
    assert await ascalar(other, "SELECT pg_terminate_backend(%s::int)", pid) is True

    async def gone() -> bool:
        sql = "SELECT 1 FROM pg_stat_activity WHERE pid = %s::int"
        return not await other.execute(sql, [pid])

    await await_until(gone)


async def acollect(
    listener: AsyncConnection, count: int, within: float = 10.0
) -> list[Notification]:
    """Receive notifications on *listener* until *count* came or *within* seconds passed."""
    got: list[Notification] = []
    for timeout in _waits(within):
        if len(got) >= count:
            break
        got += await listener.notifications(timeout)
    return got


def adapter_test_fixtures(adapter: Adapter) -> tuple[Any, Any]:
    """The fixtures ``dsn`` (a test database with an ``items (id bigint PRIMARY
    KEY)`` table) and ``other`` (a session on it) for an adapter's own tests:
    ``dsn, other = adapter_test_fixtures(ADAPTER)`` in its test module."""

    @pytest.fixture
    def dsn() -> Iterator[str]:
        with databases.temporary_database(adapter) as dsn:
            conn = adapter.connect(dsn)
            conn.execute("CREATE TABLE items (id bigint PRIMARY KEY)")
            conn.close()
            yield dsn

    @pytest.fixture
    def other(dsn: str) -> Iterator[Connection]:
        conn = adapter.connect(dsn)
        yield conn
        conn.close()

    return dsn, other
