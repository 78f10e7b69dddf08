"""Queue-level conformance of the async side: ``aenqueue`` and the async bulk
forms, through a raw async connection of the adapter's driver, in the
caller's transaction. (Working async jobs is the worker's, not yet here.)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone

import pytest

from conformance import jobs
from conformance.fixtures import ascalar
from que_core import abulk_enqueue, migrate, run_mode
from que_core.blocking import sync_side
from que_core.connection import AsyncAdapter, AsyncConnection

AConnect = Callable[[], Awaitable[AsyncConnection]]
asyncio_test = pytest.mark.asyncio


@pytest.fixture
def aqueue_dsn(async_adapter: AsyncAdapter, adb_dsn: str) -> str:
    """The test's database, migrated to the latest que schema, with the jobs' log table."""
    conn = sync_side(async_adapter).connect(adb_dsn)
    try:
        migrate(conn)
        conn.execute(jobs.LOG_TABLE)
    finally:
        conn.close()
    return adb_dsn


async def _job_count(conn: AsyncConnection) -> int:
    return int(await ascalar(conn, "SELECT count(*) FROM que_jobs"))


@pytest.fixture
def aqueue(aqueue_dsn: str, aconnect: AConnect) -> AConnect:
    """Open async sessions on the migrated database (closed after the test)."""
    return aconnect


async def _in_transaction(aqueue: AConnect) -> tuple[AsyncConnection, AsyncConnection]:
    """The caller's session, a transaction begun on it, and another session."""
    caller, other = await aqueue(), await aqueue()
    await caller.execute("BEGIN")
    return caller, other


@asyncio_test
async def test_aenqueue_joins_the_callers_transaction_and_commits_with_it(
    aqueue: AConnect,
) -> None:
    caller, other = await _in_transaction(aqueue)
    run_at = datetime.now(timezone.utc) + timedelta(hours=1)
    job = await jobs.Noted.aenqueue(
        "kept", {"n": [1, None]}, conn=caller.raw, queue="conformance", priority=7,
        run_at=run_at, tags=["t1"], extra="ż'%s",
    )  # fmt: skip
    assert isinstance(job.id, int) and job.run_at == run_at
    assert await _job_count(other) == 0  # not before the caller commits
    await caller.execute("COMMIT")
    columns = "job_class, queue, priority, run_at, args::text, kwargs::text, data::text"
    assert await other.execute(f"SELECT {columns} FROM que_jobs WHERE id = %s", [job.id]) == [(
        "conformance.jobs.Noted", "conformance", 7, run_at,
        '["kept", {"n": [1, null]}]', '{"extra": "ż\'%s"}', '{"tags": ["t1"]}',
    )]  # fmt: skip


@asyncio_test
async def test_aenqueue_is_discarded_when_the_caller_rolls_back(aqueue: AConnect) -> None:
    caller, other = await _in_transaction(aqueue)
    job = await jobs.Noted.aenqueue("discarded", conn=caller.raw)
    assert job.id is not None
    await caller.execute("ROLLBACK")
    assert await _job_count(other) == 0


@asyncio_test
async def test_aenqueue_outside_a_transaction_commits_at_once(aqueue: AConnect) -> None:
    caller, other = await aqueue(), await aqueue()
    await jobs.Noted.aenqueue("alone", conn=caller.raw)
    assert await _job_count(other) == 1


@asyncio_test
async def test_abulk_enqueue_inserts_every_job_in_the_callers_transaction(
    aqueue: AConnect,
) -> None:
    caller, other = await _in_transaction(aqueue)
    async with abulk_enqueue(conn=caller.raw) as pending:
        for i in range(3):
            await jobs.Noted.aenqueue(f"b{i}", priority=10 + i)
        assert all(job.id is None for job in pending)  # inserted when the block ends
    many = await jobs.Noted.aenqueue_many([[f"m{i}"] for i in range(200)], conn=caller.raw)
    enqueued = [*pending, *many]
    assert await _job_count(other) == 0
    await caller.execute("COMMIT")
    ids = [job.id for job in enqueued]
    assert all(isinstance(i, int) for i in ids) and len(set(ids)) == len(ids)
    rows = await other.execute("SELECT id, args::text, priority FROM que_jobs ORDER BY id")
    assert rows == [(job.id, f'["{job.args[0]}"]', job.priority) for job in enqueued]
    # The skip_notify flag did not outlive the bulk insert, on the caller's session.
    setting = "SELECT coalesce(current_setting('que.skip_notify', true), '')"
    assert await ascalar(caller, setting) == ""


@asyncio_test
async def test_inline_aenqueue_runs_a_sync_job_on_the_callers_session(aqueue: AConnect) -> None:
    caller, other = await _in_transaction(aqueue)
    with run_mode("inline"):
        job = await jobs.Noted.aenqueue("inline", conn=caller.raw)
    assert job.id is None and job.conn is caller.raw
    logged = "SELECT tag FROM conformance_log"
    assert await caller.execute(logged) == [("inline",)]  # in the caller's transaction
    assert await other.execute(logged) == []
    await caller.execute("ROLLBACK")
    assert await caller.execute(logged) == []
    assert await _job_count(other) == 0
