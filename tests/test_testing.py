"""que_core.testing: inline runs, assert_enqueued, drain, and the pytest plugin."""

from __future__ import annotations

import pytest

from conformance.fixtures import scalar
from conformance.jobs import FailingTwice, PlainJob, SelfResolving, record
from que_core import Job, settings
from que_core.connection import Adapter, Connection
from que_core.errors import ConfigurationError
from que_core.testing import (
    assert_enqueued,
    assert_not_enqueued,
    drain,
    enqueued_jobs,
    inline,
    use_connection,
)
from tests.helpers import advisory_locks, job_count, log_tags

pytest_plugins = ["pytester"]


class ChainJob(Job):
    """Enqueues a PlainJob on its own connection when it runs."""

    def run(self, tag: str) -> None:
        record(self, tag, "ran")
        PlainJob.enqueue(f"{tag} child", conn=self.db, priority=1)


def test_inline_runs_at_enqueue(db: Connection) -> None:
    with inline():
        job = PlainJob.enqueue("now", conn=db.raw)
    assert job.id is None and log_tags(db) == ["now"] and job_count(db) == 0


def test_assert_enqueued(conn: Connection) -> None:
    PlainJob.enqueue("a", conn=conn.raw, queue="q1", priority=5, tags=["t"], flag=True)
    PlainJob.enqueue(("b", 1), conn=conn.raw)
    with use_connection(conn):
        [job] = assert_enqueued(PlainJob, args=["a"], kwargs={"flag": True}, queue="q1",
                                priority=5, tags=["t"])
        assert job.id is not None and isinstance(job, PlainJob)
        assert_enqueued(PlainJob, args=[("b", 1)])  # tuples compare as the lists stored
        assert_enqueued(PlainJob, count=2)
        assert_enqueued("conformance.jobs.PlainJob", queue="default", count=1)
        assert_not_enqueued(PlainJob, args=["c"])
        assert_not_enqueued(SelfResolving)
        with pytest.raises(AssertionError, match=r"expected a conformance.jobs.PlainJob job with "
                                                 r"args=\['c'\]; found 0\. Waiting"):
            assert_enqueued(PlainJob, args=["c"])
        with pytest.raises(AssertionError, match="exactly 3"):
            assert_enqueued(PlainJob, count=3)
        with pytest.raises(AssertionError, match="expected no such"):
            assert_not_enqueued(PlainJob, queue="q1")
        assert [j.args for j in enqueued_jobs()] == [["a"], [["b", 1]]]  # priority order
    assert len(enqueued_jobs(PlainJob, conn=conn.raw)) == 2


def test_helpers_need_a_connection() -> None:
    assert settings.connection_provider is None
    with pytest.raises(ConfigurationError, match="no connection"):
        enqueued_jobs()


def test_drain_works_ready_jobs_in_order_with_their_children(db: Connection) -> None:
    from datetime import datetime, timedelta, timezone

    PlainJob.enqueue("later", conn=db.raw, run_at=datetime.now(timezone.utc) + timedelta(hours=1))
    PlainJob.enqueue("other queue", conn=db.raw, queue="other")
    ChainJob.enqueue("parent", conn=db.raw, priority=10)
    SelfResolving.enqueue("record", conn=db.raw, priority=20)
    ran = drain(db, queues=["default"])
    assert [(type(j), j.args) for j in ran] == [
        (ChainJob, ["parent"]),
        (PlainJob, ["parent child"]),
        (SelfResolving, ["record"]),
    ]
    assert log_tags(db) == ["parent", "parent child", "record"]
    assert job_count(db) == 2  # the scheduled one and the other queue's
    assert advisory_locks(db) == 0
    assert [j.args for j in drain(db.raw)] == [["other queue"]]


def test_drain_records_errors_like_a_worker(db: Connection) -> None:
    failing = FailingTwice.enqueue("f", conn=db.raw)  # retry_interval 0: ready again at once
    PlainJob.enqueue("p", conn=db.raw)
    with pytest.raises(ValueError, match="boom f"):
        drain(db)
    assert scalar(db, "SELECT error_count FROM que_jobs WHERE id = %s", failing.id) == 1
    ran = drain(db, raise_errors=False)  # each job at most once per call
    assert [j.args for j in ran] == [["p"], ["f"]]  # the retry is due later than p
    assert scalar(db, "SELECT error_count FROM que_jobs WHERE id = %s", failing.id) == 2
    assert advisory_locks(db) == 0


def test_the_pytest_plugin(
    pytester: pytest.Pytester, adapter: Adapter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QUE_TEST_ADAPTERS", adapter.name)
    pytester.makepyfile(
        """
        from que_core import Job
        from que_core.testing import assert_enqueued, drain

        class Hello(Job):
            def run(self, name):
                self.db.execute("INSERT INTO greeted VALUES (%s)", (name,))

        def test_database(que_database):
            que_database.conn.execute("CREATE TABLE greeted (name text)")
            Hello.enqueue("world", conn=que_database.conn.raw, queue="q")
            assert_enqueued(Hello, args=["world"], queue="q")
            assert [j.args for j in drain()] == [["world"]]
            assert que_database.conn.execute("SELECT name FROM greeted") == [("world",)]

        def test_fresh_database_each_time(que_database):
            rows = que_database.conn.execute(
                "SELECT to_regclass('greeted'), count(*) FROM que_jobs"
            )
            assert rows == [(None, 0)]

        def test_inline(que_database, que_inline):
            que_database.conn.execute("CREATE TABLE greeted (name text)")
            job = Hello.enqueue("inline", conn=que_database.conn.raw)
            assert job.id is None

        def test_worker(que_database, que_worker):
            import time
            que_database.conn.execute("CREATE TABLE greeted (name text)")
            worker = que_worker(queues=["w"])
            Hello.enqueue("worked", conn=que_database.conn.raw, queue="w")
            deadline = time.monotonic() + 10
            while not que_database.conn.execute("SELECT name FROM greeted"):
                assert time.monotonic() < deadline
                time.sleep(0.05)
            assert worker.running
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=4)
