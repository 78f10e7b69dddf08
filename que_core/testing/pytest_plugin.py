"""pytest plugin of que-core (entry point ``pytest11``, name ``que``).

Fixtures:

``que_database``
    A new database with a fresh que-core schema for the test, dropped after
    it: ``.dsn``, ``.adapter`` and ``.conn`` (an autocommit que-core
    Connection; ``.conn.raw`` is the driver's). The helpers of
    :mod:`que_core.testing` use ``.conn`` when given no connection.
``que_inline``
    ``enqueue`` runs jobs at once in the test's thread.
``que_worker``
    A factory: ``que_worker(queues=[...], ...)`` starts an in-process
    :class:`~que_core.Worker` on ``que_database``; stopped after the test.

The server is ``$QUE_TEST_DSN`` (or ``$DATABASE_URL``), else the embedded
PostgreSQL (pgserver, que-core's ``embedded`` extra); the role needs CREATEDB. The adapter is
``$QUE_TEST_ADAPTER`` (else the first of ``$QUE_TEST_ADAPTERS``), else the
installed one. Disable the plugin with ``-p no:que``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from que_core.connection import Adapter, Connection


@dataclass
class QueDatabase:
    """The test's database."""

    dsn: str
    adapter: Adapter
    conn: Connection

    def connect(self) -> Connection:
        """Another session on the database (closed by you)."""
        return self.adapter.connect(self.dsn)


def _adapter_name() -> str | None:
    name = os.environ.get("QUE_TEST_ADAPTER")
    if name:
        return name.strip()
    names = [n.strip() for n in os.environ.get("QUE_TEST_ADAPTERS", "").split(",") if n.strip()]
    return names[0] if names else None


@pytest.fixture
def que_database() -> Iterator[QueDatabase]:
    """A fresh database with the que-core schema, for this test only."""
    from que_core.migrations import migrate
    from que_core.plugins import get_adapter
    from que_core.testing import databases, use_connection

    adapter = get_adapter(_adapter_name())
    with databases.temporary_database(adapter) as dsn:
        conn = adapter.connect(dsn)
        try:
            migrate(conn)
            with use_connection(conn):
                yield QueDatabase(dsn, adapter, conn)
        finally:
            conn.close()


@pytest.fixture
def que_inline() -> Iterator[None]:
    """``enqueue`` runs jobs at once during this test."""
    from que_core.testing import inline

    with inline():
        yield


@pytest.fixture
def que_worker(que_database: QueDatabase) -> Iterator[Callable[..., Any]]:
    """Start in-process workers on ``que_database``; stopped after the test."""
    from que_core.worker import Worker

    started: list[Worker] = []

    def start(**kwargs: Any) -> Worker:
        kwargs.setdefault("poll_interval", 0.2)
        worker = Worker(que_database.dsn, adapter=que_database.adapter, **kwargs)
        worker.start()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop(timeout=10)
