"""The claim statement (que_core_next_jobs): it locks exactly the jobs it
returns, skips others' jobs and the ids it is told to, writes outcomes, and
releases a lock only once told to (after its outcome was committed)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from conformance.fixtures import scalar
from conformance.jobs import PlainJob, SelfResolving
from que_core.connection import Adapter, Connection
from que_core.sql import q


def my_locks(conn: Connection) -> list[int]:
    rows = conn.execute(
        "SELECT (classid::bigint << 32) | objid::bigint FROM pg_locks "
        "WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND objsubid = 1 ORDER BY 1"
    )
    return [r[0] for r in rows]


def claim(conn: Connection, queues: Sequence[str] | None = ("default",),
          max_priority: int = 32767, exclude: Sequence[int] = (), limit: int = 5,
          finished: Sequence[int] = (), outcomes: list[dict[str, Any]] | None = None,
          unlock: Sequence[int] = (), after: Sequence[Any] = (None, None, None),
          only: Sequence[str] | None = None, skip: Sequence[str] | None = None) -> list[int]:
    rows = conn.execute(q("next_jobs"), (
        list(finished), json.dumps(outcomes) if outcomes else None, list(unlock),
        None if queues is None else list(queues), max_priority, limit, list(exclude), *after,
        None if only is None else list(only), None if skip is None else list(skip)))
    return [r[0] for r in rows]


def test_takes_only_or_all_but_the_classes_given(conn: Connection) -> None:
    # Revision 7.3: a worker's event loop claims its async def classes, its
    # threads the others; with neither filter, every class (both queue walks).
    plain = PlainJob.enqueue_many([[i] for i in range(3)], conn=conn.raw)
    record = SelfResolving.enqueue_many([[i] for i in range(3)], conn=conn.raw)
    for queues in (("default",), None):
        got = claim(conn, queues, limit=10, only=[SelfResolving.job_name])
        assert got == [j.id for j in record]
        claim(conn, queues, limit=0, unlock=got)
        got = claim(conn, queues, limit=10, skip=[SelfResolving.job_name, "Nothing"])
        assert got == [j.id for j in plain]
        claim(conn, queues, limit=0, unlock=got)
        got = claim(conn, queues, limit=10, skip=[])
        assert got == [j.id for j in plain + record]
        claim(conn, queues, limit=0, unlock=got)
    assert my_locks(conn) == []


def test_locks_exactly_what_it_returns(conn: Connection) -> None:
    jobs = PlainJob.enqueue_many([[i] for i in range(100)], conn=conn.raw)
    # Rows the filters drop must never be locked (a leaked lock).
    future = datetime.now(timezone.utc) + timedelta(hours=1)
    PlainJob.enqueue_many([[i] for i in range(20)], conn=conn.raw, run_at=future)
    PlainJob.enqueue_many([[i] for i in range(20)], conn=conn.raw, queue="other")
    got = claim(conn, limit=5)
    assert got == [j.id for j in jobs[:5]]
    assert my_locks(conn) == sorted(got)


def test_skips_jobs_locked_elsewhere_and_excluded_ids(adapter: Adapter, dsn: str,
                                                      conn: Connection) -> None:
    jobs = PlainJob.enqueue_many([[i] for i in range(10)], conn=conn.raw)
    other = adapter.connect(dsn)
    try:
        assert scalar(other, "SELECT pg_try_advisory_lock(%s::bigint)", jobs[0].id) is True
        first = claim(conn, limit=2)
        assert first == [jobs[1].id, jobs[2].id]
        again = claim(conn, exclude=first, limit=2)
        assert again == [jobs[3].id, jobs[4].id]
        assert my_locks(conn) == sorted(first + again)  # each locked once
    finally:
        other.close()


def test_priority_ceiling_order_and_queues_in_order(conn: Connection) -> None:
    low = PlainJob.enqueue("low", conn=conn.raw, priority=100)
    high = PlainJob.enqueue("high", conn=conn.raw, priority=1)
    mid = PlainJob.enqueue("mid", conn=conn.raw, priority=20)
    mail = PlainJob.enqueue("mail", conn=conn.raw, priority=200, queue="mail")
    assert claim(conn, max_priority=50, limit=10) == [high.id, mid.id]
    assert claim(conn, exclude=[high.id, mid.id], limit=10) == [low.id]
    conn.execute("SELECT pg_advisory_unlock_all()")
    # The first queue named comes first, whatever the priorities.
    assert claim(conn, queues=["mail", "default"], limit=2) == [mail.id, high.id]
    conn.execute("SELECT pg_advisory_unlock_all()")
    assert claim(conn, queues=None, limit=10) == [high.id, mid.id, low.id, mail.id]


def test_outcomes_are_written_and_unlocked_only_when_told(conn: Connection) -> None:
    a, b, c, d = (PlainJob.enqueue(x, conn=conn.raw) for x in "abcd")
    got = claim(conn, limit=4)
    assert got == [a.id, b.id, c.id, d.id]
    outcomes = [
        {"id": b.id, "op": "finish"},
        {"id": c.id, "op": "error", "delay": 60, "message": "m", "backtrace": "bt"},
        {"id": d.id, "op": "expire", "message": "x", "backtrace": "y"},
    ]
    assert claim(conn, finished=[a.id], outcomes=outcomes, exclude=got) == []
    rows = conn.execute(
        "SELECT id, finished_at IS NOT NULL, expired_at IS NOT NULL, error_count, "
        "run_at > now() + interval '50 seconds', last_error_message FROM que_jobs ORDER BY id")
    assert rows == [(b.id, True, False, 0, False, None), (c.id, False, False, 1, True, "m"),
                    (d.id, False, True, 1, False, "x")]
    assert my_locks(conn) == sorted(got)  # still held: the commit was this call's
    claim(conn, unlock=got, limit=0)
    assert my_locks(conn) == []


def test_a_walk_after_a_bound_starts_there(conn: Connection) -> None:
    jobs = PlainJob.enqueue_many([[i] for i in range(6)], conn=conn.raw)
    urgent = PlainJob.enqueue("urgent", conn=conn.raw, priority=1)
    rows = conn.execute("SELECT priority, run_at, id FROM que_jobs WHERE id = %s", (jobs[2].id,))
    ((priority, run_at, job_id),) = rows
    after = ([priority], [run_at], [job_id])
    # From the bound: the jobs after it; neither the earlier ones nor a more
    # important one that came later (a full walk finds those).
    assert claim(conn, after=after, limit=10) == [j.id for j in jobs[3:]]
    conn.execute("SELECT pg_advisory_unlock_all()")
    assert claim(conn, limit=10) == [urgent.id] + [j.id for j in jobs]
    conn.execute("SELECT pg_advisory_unlock_all()")
    # A bound per queue, aligned with the queues (NULL: from the start).
    other = PlainJob.enqueue("other", conn=conn.raw, queue="other")
    got = claim(conn, queues=["other", "default"], limit=3,
                after=([None, priority], [None, run_at], [None, job_id]))
    assert got == [other.id, jobs[3].id, jobs[4].id]


def test_claims_keep_each_queues_bound_and_a_full_walk_resets_them(conn: Connection) -> None:
    from que_core.claims import Claims

    jobs = PlainJob.enqueue_many([[i] for i in range(5)], conn=conn.raw)
    claims = Claims(conn, ["default"])
    first = claims.next(None, 2)
    assert [r[0] for r in first] == [jobs[0].id, jobs[1].id]
    assert claims.after["default"][2] == jobs[1].id
    released = [r[0] for r in first]
    claims.skip(released)  # let them go unrun: they lie before the bound now
    later = claims.next(None, 5, full=False)
    assert [r[0] for r in later] == [j.id for j in jobs[2:]]
    claims.skip(r[0] for r in later)
    claims.next(None, 0)
    assert [r[0] for r in claims.next(None, 5)] == [j.id for j in jobs]  # full
    claims.flush()
    assert my_locks(conn) == []
