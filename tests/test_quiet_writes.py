"""The worker's own writes skip Que's deprecated que_state NOTIFY; the
job-available NOTIFY of new jobs is untouched."""

from __future__ import annotations

from typing import Any

from conformance.fixtures import scalar, wait_until
from conformance.jobs import PlainJob
from que_core.claims import Claims
from que_core.connection import Adapter, Connection
from que_core.execute import DELETE, FINISH, Outcome
from que_core.sql import q
from tests.helpers import job_count


def test_worker_writes_send_no_state_notification(
    adapter: Adapter, dsn: str, conn: Connection
) -> None:
    listener = adapter.connect(dsn)
    try:
        listener.execute("LISTEN que_state")
        a = PlainJob.enqueue(1, conn=conn.raw)
        b = PlainJob.enqueue(2, conn=conn.raw)
        c = PlainJob.enqueue(3, conn=conn.raw)
        d = PlainJob.enqueue(4, conn=conn.raw)
        seen: list[object] = []  # the inserts notify; they may arrive apart
        wait_until(lambda: seen.extend(listener.notifications(0.2)) or len(seen) >= 4, within=5)
        claims = Claims(conn, ["default"])
        assert len(claims.next(None, 4)) == 4
        for job, kind in ((a, DELETE), (c, DELETE), (d, DELETE), (b, FINISH)):
            claims.add(Outcome(job, kind, 0.0))
        claims.flush()  # the outcomes in one statement, then the unlock
        assert listener.notifications(0.3) == []
        assert job_count(conn) == 1  # b, finished
        # The setting was local to those statements: a plain delete notifies.
        conn.execute(q("destroy_job"), (b.id,))
        assert wait_until(lambda: listener.notifications(0.2), within=5)
        assert scalar(conn, "SELECT coalesce(current_setting('que.skip_notify', true), '')") == ""
    finally:
        listener.close()


def test_jobs_enqueued_by_a_job_still_notify(db: Connection, que_worker: Any) -> None:
    from que_core import Job

    class Parent(Job):
        def run(self) -> None:
            PlainJob.enqueue("child", conn=self.conn)

    que_worker(poll_interval=60)
    wait_until(lambda: scalar(db, "SELECT bool_and(listening) FROM que_lockers"))
    Parent.enqueue(conn=db.raw)
    wait_until(lambda: scalar(db, "SELECT count(*) FROM conformance_log WHERE tag = 'child'") == 1,
             within=5)
