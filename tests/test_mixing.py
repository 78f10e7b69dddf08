"""Mixing drivers: a job enqueued through one driver is worked through another."""

from __future__ import annotations

import itertools

import pytest

from conformance.fixtures import wait_until
from conformance.jobs import LOG_TABLE, SelfResolving
from que_core import Worker, plugins
from que_core.testing import databases
from tests.helpers import job_count, log_tags

PAIRS = list(itertools.permutations(sorted(plugins.adapters()), 2))


@pytest.mark.skipif(not PAIRS, reason="needs two adapters installed")
@pytest.mark.parametrize(("enqueuer", "worker"), PAIRS, ids=[f"{a}-to-{b}" for a, b in PAIRS])
def test_enqueued_by_one_driver_worked_by_another(
    server_dsn: str, enqueuer: str, worker: str
) -> None:
    from que_core import migrate

    a = plugins.get_adapter(enqueuer)
    with databases.temporary_database(a, server_dsn) as dsn:
        conn = a.connect(dsn)
        try:
            migrate(conn)
            conn.execute(LOG_TABLE)
            with conn.transaction():
                jobs = [SelfResolving.enqueue(f"{enqueuer}-{i}", conn=conn.raw) for i in range(5)]
            SelfResolving.enqueue_many([[f"bulk-{i}"] for i in range(5)], conn=conn.raw)
            w = Worker(dsn, adapter=worker, poll_interval=0.2).start()
            try:
                wait_until(lambda: job_count(conn) == 0)
            finally:
                assert w.stop(timeout=10)
            tags = log_tags(conn)
            assert sorted(tags) == sorted(
                [f"{enqueuer}-{i}" for i in range(5)] + [f"bulk-{i}" for i in range(5)]
            )
            assert all(j.id is not None for j in jobs)
        finally:
            conn.close()
