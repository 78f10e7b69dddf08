"""The lock query locks exactly the jobs it returns, and skips others' jobs."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from que_core.connection import Adapter, Connection
from que_core.sql import q
from tests.helpers import scalar
from tests.jobs import PlainJob


def my_locks(conn: Connection) -> list[int]:
    rows = conn.execute(
        "SELECT (classid::bigint << 32) | objid::bigint FROM pg_locks "
        "WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND objsubid = 1 ORDER BY 1"
    )
    return [r[0] for r in rows]


def lock(conn: Connection, queue: str = "default", max_priority: int = 32767,
         held: list[int] | None = None, limit: int = 5) -> list[int]:
    return [r[0] for r in conn.execute(q("lock_jobs"), (queue, max_priority, held or [], limit))]


def test_locks_exactly_what_it_returns(conn: Connection) -> None:
    jobs = PlainJob.enqueue_many([[i] for i in range(100)], conn=conn.raw)
    # Rows the inner filters drop must never be locked (a leaked lock).
    future = datetime.now(timezone.utc) + timedelta(hours=1)
    PlainJob.enqueue_many([[i] for i in range(20)], conn=conn.raw, run_at=future)
    PlainJob.enqueue_many([[i] for i in range(20)], conn=conn.raw, queue="other")
    got = lock(conn, limit=5)
    assert got == [j.id for j in jobs[:5]]
    assert my_locks(conn) == sorted(got)


def test_skips_jobs_locked_elsewhere_and_held_ids(adapter: Adapter, dsn: str,
                                                 conn: Connection) -> None:
    jobs = PlainJob.enqueue_many([[i] for i in range(10)], conn=conn.raw)
    other = adapter.connect(dsn)
    try:
        assert scalar(other, q("try_lock_job"), (jobs[0].id,)) is True
        first = lock(conn, limit=2)
        assert first == [jobs[1].id, jobs[2].id]
        again = lock(conn, held=first, limit=2)
        assert again == [jobs[3].id, jobs[4].id]
        assert my_locks(conn) == sorted(first + again)  # each locked once
    finally:
        other.close()


def test_priority_ceiling_and_order(conn: Connection) -> None:
    low = PlainJob.enqueue("low", conn=conn.raw, priority=100)
    high = PlainJob.enqueue("high", conn=conn.raw, priority=1)
    mid = PlainJob.enqueue("mid", conn=conn.raw, priority=20)
    assert lock(conn, max_priority=50, limit=10) == [high.id, mid.id]
    assert lock(conn, held=[high.id, mid.id], limit=10) == [low.id]


def test_unlock_releases(conn: Connection) -> None:
    PlainJob.enqueue_many([[i] for i in range(3)], conn=conn.raw)
    got = lock(conn)
    conn.execute(q("unlock_jobs"), (got,))
    assert my_locks(conn) == []
