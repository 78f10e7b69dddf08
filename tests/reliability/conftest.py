"""Fixtures of the reliability suite (docs/reliability.md).
``QUE_RELIABILITY=full`` runs the heavy version."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from que_core.connection import Adapter, Connection
from tests.reliability import harness


@pytest.fixture
def rel(adapter: Adapter, dsn: str) -> Iterator[Connection]:
    """The checker's session on the case's database, bookkeeping tables created."""
    conn = adapter.connect(dsn)
    harness.setup_tables(conn)
    yield conn
    conn.close()


@pytest.fixture
def elapsed() -> harness.Elapsed:
    """The seconds since the case began; asked for last, it leaves out the set-up
    of the fixtures before it (as the clock its body started did)."""
    return harness.timer()


@pytest.fixture
def procs(adapter: Adapter, dsn: str, rel: Connection) -> Iterator[harness.WorkerProcs]:
    wp = harness.WorkerProcs(dsn, adapter, rel)
    yield wp
    wp.close()


#: Which adapter's async side runs the async def jobs of in-process workers,
#: by the sync adapter: each async side is met under faults.
ASYNC_SIDE = {"psycopg": "psycopg", "psycopg2": "asyncpg", "pg8000": "asyncpg"}


@pytest.fixture
def workers(adapter: Adapter, dsn: str, que_worker: Any) -> Any:
    """In-process workers (the shipped ``que_worker``), with the jobs' sidecar
    set, their async def jobs on the async side of :data:`ASYNC_SIDE`."""
    from que_core import plugins
    from tests.reliability import rjobs

    rjobs.SIDECAR.update(dsn=dsn, adapter=adapter.name)
    rjobs.ECHOED.clear()  # job ids start again at 1 in each test's database
    side = ASYNC_SIDE.get(adapter.name)

    def start(**kwargs: Any) -> Any:
        if side in plugins.async_adapters():
            kwargs.setdefault("async_adapter", side)
        return que_worker(**kwargs)

    return start
