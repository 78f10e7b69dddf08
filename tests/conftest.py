"""Fixtures: every test gets its own database on a real PostgreSQL.

The server is ``$QUE_TEST_DSN`` (or ``$DATABASE_URL``), else the embedded one.
Tests that take ``adapter`` run once per installed adapter; set
``QUE_TEST_ADAPTERS=psycopg,pg8000`` to narrow that.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from que_core import plugins
from que_core.connection import Adapter, Connection
from que_core.testing import databases


def _adapter_names() -> list[str]:
    wanted = os.environ.get("QUE_TEST_ADAPTERS")
    installed = sorted(plugins.adapters())
    if wanted:
        return [n.strip() for n in wanted.split(",") if n.strip()]
    return installed


@pytest.fixture(scope="session")
def server_dsn() -> str:
    return databases.server_dsn()


@pytest.fixture(scope="session", params=_adapter_names())
def adapter(request: pytest.FixtureRequest) -> Adapter:
    return plugins.get_adapter(request.param)


@pytest.fixture
def empty_dsn(adapter: Adapter, server_dsn: str) -> Iterator[str]:
    """A new database without the que schema."""
    with databases.temporary_database(adapter, server_dsn) as dsn:
        yield dsn


@pytest.fixture
def dsn(adapter: Adapter, empty_dsn: str) -> str:
    """A new database migrated to the latest que schema."""
    from que_core import migrate

    conn = adapter.connect(empty_dsn)
    try:
        migrate(conn)
    finally:
        conn.close()
    return empty_dsn


@pytest.fixture
def conn(adapter: Adapter, dsn: str) -> Iterator[Connection]:
    c = adapter.connect(dsn)
    yield c
    c.close()


@pytest.fixture
def db(conn: Connection) -> Connection:
    """``conn`` with the tests' ``test_log`` table created."""
    from tests.jobs import LOG_TABLE

    conn.execute(LOG_TABLE)
    return conn


@pytest.fixture
def make_worker(adapter: Adapter, dsn: str) -> Iterator[object]:
    """Start in-process workers on the test database; all stopped at teardown."""
    from que_core import Worker

    started: list[Worker] = []

    def make(**kwargs: object) -> Worker:
        kwargs.setdefault("poll_interval", 0.2)
        w = Worker(dsn, adapter=adapter, **kwargs)  # type: ignore[arg-type]
        w.start()
        started.append(w)
        return w

    yield make
    for w in started:
        w.stop(timeout=10)


@pytest.fixture(scope="module")
def ajobs() -> Iterator[Any]:
    """tests.ajobs (``async def`` jobs), registered for the module's tests
    only: another test's in-process worker must not start an event loop."""
    import tests.ajobs as module
    from que_core.job import register_job, registry

    for cls in module.CLASSES:
        register_job(cls)
    yield module
    for cls in module.CLASSES:
        registry.pop(cls.job_name, None)
