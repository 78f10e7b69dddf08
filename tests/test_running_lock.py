"""The running lock of an ``async def`` job (schema revision 7.7), on real
sessions: a job's claim lives on its worker's claiming session, the job runs
on a session of its own, which holds the job's running lock; no que-core
claim takes a job whose running lock is held, even once its claim is gone.

These are the statements the async worker uses (que_core/async_worker.py:
hold_running for a job claimed alone; take_running on each job's session,
then running_claimed once, for several),
played out step by step so that each interleaving is certain; the
reliability suite's terminate and restart cases play them out at random."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest

from conformance.fixtures import scalar, wait_until
from que_core import Job, migrate, plugins
from que_core.async_worker import AsyncClaimer, ClaimCheck, EventLoop, Sessions
from que_core.claims import Claims, SetAside
from que_core.connection import Connection
from que_core.dispatch import Dispatcher
from que_core.sql import q
from que_core.testing import databases


class Noop(Job):
    pass


@pytest.fixture
def sessions() -> Iterator[tuple[Connection, Connection, Connection, Connection]]:
    """A migrated database and four sessions on it: a claimer, a job's
    session, another worker's claimer and an observer."""
    adapter = plugins.get_adapter("psycopg")
    with databases.temporary_database(adapter, databases.server_dsn()) as dsn:
        conns = [adapter.connect(dsn) for _ in range(4)]
        try:
            migrate(conns[3])
            yield conns[0], conns[1], conns[2], conns[3]
        finally:
            for c in conns:
                if not c.closed:
                    c.close()


def _pid(conn: Connection) -> int:
    return int(scalar(conn, "SELECT pg_backend_pid()"))


def _hold(conn: Connection, job_id: int | None, claimer: int, release: int | None = None
          ) -> bool:
    """What the async worker does before a job claimed alone starts (of
    several claimed together: take_running each, then running_claimed once)."""
    return bool(scalar(conn, q("hold_running"), job_id, claimer, release))


def _claimed(conn: Connection, claimer: int, job_ids: list[int]) -> set[int]:
    return {int(r[0]) for r in conn.execute(q("running_claimed"), (claimer, job_ids))}


def _claim(conn: Connection) -> list[int]:
    return [row[0] for row in Claims(conn, None).next(None, 10)]


def _locks(observer: Connection, kind: int) -> int:
    """This database's advisory locks of *kind* (1: bigint keys, 2: two keys)."""
    return int(scalar(observer, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                      "AND objsubid = %s AND database = (SELECT oid FROM pg_database "
                      "WHERE datname = current_database())", kind))


def _end(observer: Connection, pid: int) -> None:
    observer.execute("SELECT pg_terminate_backend(%s)", (pid,))
    wait_until(lambda: scalar(observer, "SELECT count(*) FROM pg_stat_activity WHERE pid = %s",
                              pid) == 0, what="the session to end")


def test_no_claim_takes_a_running_job_whose_claim_was_lost(sessions: tuple[Connection, ...]
                                                           ) -> None:
    claimer, job_session, other, observer = sessions
    job_id = Noop.enqueue(conn=observer.raw).id
    assert _claim(claimer) == [job_id]
    assert _hold(job_session, job_id, _pid(claimer))  # the job starts
    _end(observer, _pid(claimer))  # the claiming session alone is lost
    # Its claim went with it; the job still runs: no claim takes it.
    assert _claim(other) == []
    assert _locks(observer, 1) == 0  # (not even a leaked claim)
    # The job ended: its session releases the running lock (with its next
    # job, or on its own) and the job, whose outcome was never written, is
    # claimed again.
    _hold(job_session, None, 0, release=job_id)
    assert _claim(other) == [job_id]


def test_a_job_whose_claim_was_lost_before_it_started_does_not_start(
        sessions: tuple[Connection, ...]) -> None:
    claimer, job_session, other, observer = sessions
    job_id = Noop.enqueue(conn=observer.raw).id
    assert _claim(claimer) == [job_id]
    lost = _pid(claimer)
    _end(observer, lost)
    assert _claim(other) == [job_id]  # another worker took it meanwhile
    assert not _hold(job_session, job_id, lost)  # the first does not run it
    # ... and keeps no running lock of it.
    assert _locks(observer, 2) == 0


def test_the_running_lock_of_the_last_job_goes_with_the_next(sessions: tuple[Connection, ...]
                                                            ) -> None:
    claimer, job_session, _, observer = sessions
    first = Noop.enqueue(conn=observer.raw).id
    second = Noop.enqueue(conn=observer.raw).id
    assert _claim(claimer) == [first, second]
    pid = _pid(claimer)
    assert _hold(job_session, first, pid)
    assert _hold(job_session, second, pid, release=first)
    held = observer.execute(
        "SELECT classid::bigint, objid::bigint FROM pg_locks WHERE locktype = 'advisory' "
        "AND objsubid = 2 AND pid = %s", (_pid(job_session),))
    # Keys: (-1 - (id >> 32), low 32 bits of id); pg_locks shows them unsigned.
    assert [(int(c), int(o)) for c, o in held] == [(0xFFFFFFFF, second)]
    # Its own job already held by the claiming session, the running lock is
    # ours while the claim lasts: a second hold of it by another session fails.
    assert not _hold(observer, second, pid)


def test_ids_past_32_bits_get_their_own_running_lock(sessions: tuple[Connection, ...]) -> None:
    claimer, job_session, other, observer = sessions
    observer.execute("SELECT setval('que_jobs_id_seq', 4294967296 + 6)")
    high = Noop.enqueue(conn=observer.raw).id
    observer.execute("SELECT setval('que_jobs_id_seq', 6)")
    low = Noop.enqueue(conn=observer.raw).id
    assert (high & 0xFFFFFFFF) == low  # same low half, other high half
    assert sorted(_claim(claimer)) == [low, high]
    assert _hold(job_session, high, _pid(claimer))
    _end(observer, _pid(claimer))
    assert _claim(other) == [low]  # the high one runs; the low one does not


def test_one_check_answers_for_the_jobs_claimed_together(sessions: tuple[Connection, ...]
                                                        ) -> None:
    claimer, _, other, observer = sessions
    ids = [Noop.enqueue(conn=observer.raw).id for _ in range(3)]
    assert _claim(claimer) == ids
    pid = _pid(claimer)
    # Claims of this claimer only: one another session holds is not counted.
    foreign = Noop.enqueue(conn=observer.raw).id
    assert _claim(other) == [foreign]
    assert _claimed(observer, pid, [*ids, foreign]) == set(ids)
    assert _claimed(observer, _pid(other), [*ids, foreign]) == {foreign}
    _end(observer, pid)
    assert _claimed(observer, pid, ids) == set()


# -- the worker's side: AsyncClaimer's tasks, on a loop of the test's own ------------


def _claimer(dsn: str) -> AsyncClaimer:
    """An AsyncClaimer not started (no thread, no loop of its own): its job
    tasks' code, run here on asyncio.run's loop, with real sessions."""
    adapter = plugins.get_adapter("psycopg")
    return AsyncClaimer(lambda: adapter.connect(dsn), [], Dispatcher(), EventLoop(),
                        Sessions(plugins.get_async_adapter("psycopg"), dsn), classes=[],
                        concurrency=2, poll_interval=1.0, set_aside=SetAside(),
                        stopping=threading.Event(), stop_event=threading.Event())


def _dsn(conn: Connection) -> str:
    return str(conn.raw.info.dsn)


def test_the_jobs_claimed_together_run_only_if_their_claim_still_holds(
        sessions: tuple[Connection, ...]) -> None:
    claimer, _, _, observer = sessions
    first, second = (Noop.enqueue(conn=observer.raw).id for _ in range(2))
    assert _claim(claimer) == [first, second]
    claimer.execute("SELECT pg_advisory_unlock(%s)", (second,))  # as if lost
    worker = _claimer(_dsn(observer))

    async def hold_both() -> list[bool | None]:
        check = ClaimCheck(_pid(claimer), [first, second])
        conns = [await worker.sessions.take() for _ in range(2)]
        held = await asyncio.gather(worker._hold(first, conns[0], check),
                                    worker._hold(second, conns[1], check))
        # The first's running lock is held on its session; the second's is not.
        locks = _locks(observer, 2)
        await worker.sessions.close()
        await conns[0].close()
        return [*held, locks]  # type: ignore[list-item]

    try:
        assert asyncio.run(hold_both()) == [True, False, 1]
    finally:
        worker.loop.loop.close()


def test_a_job_cancelled_while_taking_its_running_lock_closes_its_session(
        sessions: tuple[Connection, ...]) -> None:
    claimer, _, _, observer = sessions
    job_id = Noop.enqueue(conn=observer.raw).id
    (row,) = Claims(claimer, None).next(None, 10)
    worker = _claimer(_dsn(observer))

    async def cancelled() -> tuple[bool, int]:
        # A batch of two whose other job never comes: this one waits, its
        # running lock taken, for the claim check, and is cancelled there
        # (the shutdown deadline, say).
        task = asyncio.get_running_loop().create_task(
            worker._run_job(row, ClaimCheck(_pid(claimer), [job_id, job_id + 1])))
        while _locks(observer, 2) == 0:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return task.cancelled(), len(worker.sessions.pids)

    try:
        # Its session closed (none left open), so its running lock is gone:
        # once the server has ended the closed session's backend, a moment
        # after the client closed it (a leaked session never lets go).
        assert asyncio.run(cancelled()) == (True, 0)
        wait_until(lambda: _locks(observer, 2) == 0, within=5, what="the running lock to go")
    finally:
        worker.loop.loop.close()


def test_a_task_cancelled_before_it_began_does_not_hold_up_its_batch(
        sessions: tuple[Connection, ...]) -> None:
    claimer, _, _, observer = sessions
    Noop.enqueue(conn=observer.raw)
    Noop.enqueue(conn=observer.raw)
    rows = Claims(claimer, None).next(None, 10)
    worker = _claimer(_dsn(observer))
    loop = worker.loop.loop  # not running on a thread of its own: driven here

    async def one_cancelled() -> list[bool]:
        worker._spawn(rows, _pid(claimer))
        tasks = list(worker._tasks.values())
        tasks[1].cancel()  # before it ran at all, as at a deadline
        await asyncio.wait_for(asyncio.wait(tasks), 10)
        await worker.sessions.close()
        return [t.cancelled() for t in tasks]

    try:
        assert loop.run_until_complete(one_cancelled()) == [False, True]
        # The first ran to an outcome; the second was not run.
        assert {job_id: outcome is not None for job_id, outcome in worker._done} == {
            rows[0][0]: True, rows[1][0]: False}
    finally:
        loop.close()
