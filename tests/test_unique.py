"""Unique jobs: at most one job of a class and key waiting or running,
enforced by que_core_unique_key_idx (INSERT ... ON CONFLICT)."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from conformance.fixtures import scalar, wait_until
from conformance.jobs import PlainJob, UniqueJob
from que_core import bulk_enqueue
from que_core.connection import Adapter, Connection
from que_core.errors import ConfigurationError, DuplicateJob, InvalidJob


def _rows(conn: Connection) -> list[tuple[Any, ...]]:
    return conn.execute("SELECT id, args::text, priority, que_core_unique_key FROM que_jobs "
                        "ORDER BY id")


def test_a_second_enqueue_returns_the_first_job(conn: Connection) -> None:
    first = UniqueJob.enqueue(42, conn=conn.raw)
    again = UniqueJob.enqueue(42, conn=conn.raw)
    other = UniqueJob.enqueue(43, conn=conn.raw)
    assert (first.duplicate, first.key) == (False, "user:42")
    assert (again.id, again.duplicate, again.replaced) == (first.id, True, False)
    assert other.id != first.id and not other.duplicate
    assert [r[0] for r in _rows(conn)] == [first.id, other.id]


def test_an_explicit_key_and_other_classes(conn: Connection) -> None:
    a = PlainJob.enqueue("x", conn=conn.raw, unique_key="k")
    b = PlainJob.enqueue("y", conn=conn.raw, unique_key="k")
    c = UniqueJob.enqueue(1, conn=conn.raw, unique_key="k")  # another class: its own keys
    d = PlainJob.enqueue("z", conn=conn.raw)  # no key: never unique
    e = PlainJob.enqueue("z", conn=conn.raw)
    assert b.id == a.id and b.duplicate and b.args == ["x"]
    assert len({a.id, c.id, d.id, e.id}) == 4


def test_skip_returns_the_existing_jobs_values(conn: Connection) -> None:
    first = UniqueJob.enqueue(7, conn=conn.raw, priority=3, tag="first")
    again = UniqueJob.enqueue(7, conn=conn.raw, priority=9, tag="second")
    assert again.duplicate and (again.id, again.priority, again.kwargs) == (
        first.id, 3, {"tag": "first"})


def test_replace_takes_the_new_args_priority_and_run_at(conn: Connection) -> None:
    later = datetime.now(timezone.utc) + timedelta(hours=1)
    first = UniqueJob.enqueue(7, conn=conn.raw, tag="first")
    new = UniqueJob.enqueue(7, conn=conn.raw, tag="second", priority=5, run_at=later,
                            on_conflict="replace")
    assert (new.id, new.duplicate, new.replaced) == (first.id, True, True)
    row = conn.execute("SELECT kwargs::text, priority, run_at FROM que_jobs WHERE id = %s",
                       (first.id,))
    assert row == [('{"tag": "second"}', 5, later)]
    assert scalar(conn, "SELECT count(*) FROM que_jobs") == 1


def test_replace_leaves_a_running_job_alone(conn: Connection, adapter: Adapter,
                                            dsn: str) -> None:
    first = UniqueJob.enqueue(7, conn=conn.raw, tag="first")
    worker = adapter.connect(dsn)  # holds the job's lock, as a worker running it does
    try:
        worker.execute("SELECT pg_advisory_lock(%s)", (first.id,))
        new = UniqueJob.enqueue(7, conn=conn.raw, tag="second", on_conflict="replace")
        assert (new.id, new.duplicate, new.replaced) == (first.id, True, False)
        assert new.kwargs == {"tag": "first"}
        assert scalar(conn, "SELECT kwargs::text FROM que_jobs") == '{"tag": "first"}'
    finally:
        worker.close()


def test_raise_inserts_nothing_and_leaves_the_transaction_usable(conn: Connection) -> None:
    first = UniqueJob.enqueue(7, conn=conn.raw)
    with conn.transaction():
        with pytest.raises(DuplicateJob, match=rf"user:7.*job {first.id}") as info:
            UniqueJob.enqueue(7, conn=conn.raw, on_conflict="raise")
        assert info.value.job.id == first.id  # type: ignore[attr-defined]
        PlainJob.enqueue("after", conn=conn.raw)  # the transaction was not aborted
    assert scalar(conn, "SELECT count(*) FROM que_jobs") == 2


def test_bad_options_are_refused(conn: Connection) -> None:
    with pytest.raises(ConfigurationError, match="'sometimes'"):
        UniqueJob.enqueue(7, conn=conn.raw, on_conflict="sometimes")
    with pytest.raises(InvalidJob, match="unique key"):
        PlainJob.enqueue("x", conn=conn.raw, unique_key=["a"])
    with pytest.raises(InvalidJob, match="unique key is empty"):
        PlainJob.enqueue("x", conn=conn.raw, unique_key="")
    with pytest.raises(ConfigurationError, match="on_conflict"):
        type("Bad", (PlainJob,), {"on_conflict": "merge", "__module__": "tests.x"},
             register=False)
    assert scalar(conn, "SELECT count(*) FROM que_jobs") == 0


def test_the_key_is_the_callers_transaction(conn: Connection) -> None:
    with pytest.raises(RuntimeError), conn.transaction():
        UniqueJob.enqueue(7, conn=conn.raw)
        assert UniqueJob.enqueue(7, conn=conn.raw).duplicate  # seen in its transaction
        raise RuntimeError("roll back")
    assert not UniqueJob.enqueue(7, conn=conn.raw).duplicate  # rolled back: the key is free


def test_a_finished_or_expired_job_lets_its_key_go(conn: Connection) -> None:
    first = UniqueJob.enqueue(7, conn=conn.raw)
    conn.execute("UPDATE que_jobs SET finished_at = now() WHERE id = %s", (first.id,))
    second = UniqueJob.enqueue(7, conn=conn.raw)
    conn.execute("UPDATE que_jobs SET expired_at = now() WHERE id = %s", (second.id,))
    third = UniqueJob.enqueue(7, conn=conn.raw)
    conn.execute("DELETE FROM que_jobs WHERE id = %s", (third.id,))
    fourth = UniqueJob.enqueue(7, conn=conn.raw)
    assert len({first.id, second.id, third.id, fourth.id}) == 4
    assert not any(j.duplicate for j in (first, second, third, fourth))


def test_a_worked_job_lets_its_key_go(db: Connection, que_worker: Any) -> None:
    first = UniqueJob.enqueue(7, conn=db.raw)
    que_worker(worker_count=1)
    wait_until(lambda: scalar(db, "SELECT count(*) FROM que_jobs") == 0)
    assert not UniqueJob.enqueue(7, conn=db.raw).duplicate
    assert scalar(db, "SELECT count(*) FROM conformance_log WHERE job_id = %s", first.id) == 1


def test_bulk_enqueue(conn: Connection) -> None:
    existing = UniqueJob.enqueue(1, conn=conn.raw)
    with bulk_enqueue(conn=conn.raw) as jobs:
        for user in (1, 2, 2, 3):
            UniqueJob.enqueue(user, conn=conn.raw)
        PlainJob.enqueue("plain", conn=conn.raw)
    assert [j.duplicate for j in jobs] == [True, False, True, False, False]
    assert jobs[0].id == existing.id and jobs[2].id == jobs[1].id
    many = UniqueJob.enqueue_many([[3], [4], [4]], conn=conn.raw)
    assert [j.duplicate for j in many] == [True, False, True]
    assert scalar(conn, "SELECT count(*) FROM que_jobs") == 5
    assert sorted(r[3] for r in _rows(conn) if r[3]) == [f"user:{n}" for n in (1, 2, 3, 4)]


def test_bulk_raise_rolls_the_whole_batch_back(conn: Connection) -> None:
    UniqueJob.enqueue(1, conn=conn.raw)
    with pytest.raises(DuplicateJob), bulk_enqueue(conn=conn.raw):
        PlainJob.enqueue("plain", conn=conn.raw)
        UniqueJob.enqueue(2, conn=conn.raw)
        UniqueJob.enqueue(1, conn=conn.raw, on_conflict="raise")
    assert scalar(conn, "SELECT count(*) FROM que_jobs") == 1


@pytest.mark.asyncio
async def test_aenqueue(dsn: str) -> None:
    psycopg = pytest.importorskip("psycopg")
    async with await psycopg.AsyncConnection.connect(dsn) as raw:
        first = await UniqueJob.aenqueue(5, conn=raw)
        again = await UniqueJob.aenqueue(5, conn=raw, tag="new", on_conflict="replace")
        await raw.commit()
        assert (again.id, again.replaced) == (first.id, True)
        with pytest.raises(DuplicateJob):
            await UniqueJob.aenqueue(5, conn=raw, on_conflict="raise")
        cur = await raw.execute("SELECT count(*), min(kwargs::text) FROM que_jobs")
        assert await cur.fetchone() == (1, '{"tag": "new"}')


@pytest.mark.parametrize(("on_conflict", "each"), [("skip", 1000), ("replace", 250)])
def test_eight_sessions_enqueue_one_key_1000_times(adapter: Adapter, dsn: str,
                                                    on_conflict: str, each: int) -> None:
    sessions = 8  # each enqueuing the same key *each* times, all at once
    conns = [adapter.connect(dsn) for _ in range(sessions)]
    ids: list[int] = []
    errors: list[BaseException] = []
    start = threading.Barrier(sessions)

    def enqueue(c: Connection) -> None:
        try:
            start.wait()
            for i in range(each):
                job = UniqueJob.enqueue(42, conn=c.raw, n=i, on_conflict=on_conflict)
                assert job.id is not None
                ids.append(job.id)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=enqueue, args=(c,)) for c in conns]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not errors, errors[:3]
        assert len(ids) == sessions * each
        assert scalar(conns[0], "SELECT count(*) FROM que_jobs") == 1
        assert set(ids) == {scalar(conns[0], "SELECT id FROM que_jobs")}
    finally:
        for c in conns:
            c.close()


def test_retrying_an_expired_job_whose_key_is_taken_leaves_it(conn: Connection) -> None:
    from que_core import admin

    old = UniqueJob.enqueue(7, conn=conn.raw)
    conn.execute("UPDATE que_jobs SET expired_at = now() WHERE id = %s", (old.id,))
    new = UniqueJob.enqueue(7, conn=conn.raw)
    result = admin.retry_jobs(conn, admin.JobFilter(ids=[old.id or 0]))
    assert (result.matched, result.changed) == (1, 0)
    conn.execute("DELETE FROM que_jobs WHERE id = %s", (new.id,))
    result = admin.retry_jobs(conn, admin.JobFilter(ids=[old.id or 0]))
    assert (result.matched, result.changed) == (1, 1)
