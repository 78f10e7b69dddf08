"""Fixtures: every test gets its own database on a real PostgreSQL.

The server is ``$QUE_TEST_DSN`` (or ``$DATABASE_URL``), else the embedded one.
The adapters are :func:`que_core.testing.databases.adapter_names`
(``QUE_TEST_ADAPTERS=psycopg,pg8000`` narrows them). A test that takes
``adapter`` runs on the first of them, since the core does the same whatever
the driver; one marked ``per_adapter`` (where the core meets a driver: its
raw connections, errors, types, lost sessions) runs once per adapter with a
sync side, as the conformance suite (``test_conformance.py``) does.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from que_core import plugins
from que_core.connection import Adapter, Connection
from que_core.testing import databases
from que_core.testing.pytest_plugin import QueDatabase
from tests.helpers import session


def _sync_adapter_names() -> list[str]:
    with_sync = plugins.adapters()
    return [n for n in databases.adapter_names() if n in with_sync]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "per_adapter: run once per adapter (where the core meets a driver)")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "adapter" not in metafunc.fixturenames or metafunc.module.__name__.endswith(
            "test_conformance"):  # the conformance suite's host parametrises its own
        return
    names = _sync_adapter_names()
    if metafunc.definition.get_closest_marker("per_adapter") is None:
        names = names[:1]
    metafunc.parametrize("adapter", names, indirect=True, scope="session")


@pytest.fixture(scope="session")
def server_dsn() -> str:
    return databases.server_dsn()


@pytest.fixture(scope="session")
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
    yield from session(adapter, dsn)


@pytest.fixture
def db(conn: Connection) -> Connection:
    """``conn`` with the tests' ``conformance_log`` table created."""
    from conformance.jobs import LOG_TABLE

    conn.execute(LOG_TABLE)
    return conn


@pytest.fixture
def que_database(adapter: Adapter, dsn: str, conn: Connection) -> QueDatabase:
    """The test's database as the shipped plugin's fixture: its ``que_worker`` is
    the tests' worker fixture."""
    return QueDatabase(dsn, adapter, conn)


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
