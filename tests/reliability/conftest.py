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
def procs(adapter: Adapter, dsn: str, rel: Connection) -> Iterator[harness.WorkerProcs]:
    wp = harness.WorkerProcs(dsn, adapter, rel)
    yield wp
    wp.close()


@pytest.fixture
def workers(adapter: Adapter, dsn: str, que_worker: Any) -> Any:
    """In-process workers (the shipped ``que_worker``), with the jobs' sidecar set."""
    from tests.reliability import rjobs

    rjobs.SIDECAR.update(dsn=dsn, adapter=adapter.name)
    rjobs.ECHOED.clear()  # job ids start again at 1 in each test's database
    return que_worker
