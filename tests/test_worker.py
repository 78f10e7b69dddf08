"""Working jobs with in-process workers against the real server."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from conformance.fixtures import scalar, wait_until
from conformance.jobs import FailingTwice, PlainJob, SelfResolving, SleepJob
from que_core import Job, settings
from que_core.connection import Connection
from tests.helpers import advisory_locks, job_count, log_tags


def test_worker_priority_thresholds(db: Connection, que_worker: Any) -> None:
    # A single thread limited to priority <= 10 never takes a priority-50 job.
    PlainJob.enqueue("low", conn=db.raw, priority=50)
    PlainJob.enqueue("high", conn=db.raw, priority=10)
    que_worker(worker_priorities=[10])
    wait_until(lambda: log_tags(db) == ["high"])
    time.sleep(0.5)
    assert log_tags(db) == ["high"]
    assert job_count(db) == 1


def test_scheduled_job_waits_for_its_time(db: Connection, que_worker: Any) -> None:
    at = datetime.now(timezone.utc) + timedelta(seconds=1.5)
    PlainJob.enqueue("later", conn=db.raw, run_at=at)
    que_worker()
    time.sleep(0.8)
    assert log_tags(db) == []
    wait_until(lambda: log_tags(db) == ["later"])
    ran_at = scalar(db, "SELECT at FROM conformance_log")
    assert ran_at >= at


def test_queues_are_separate(db: Connection, que_worker: Any) -> None:
    PlainJob.enqueue("a", conn=db.raw, queue="a")
    PlainJob.enqueue("b", conn=db.raw, queue="b")
    que_worker(queues=["b"])
    wait_until(lambda: log_tags(db) == ["b"])
    time.sleep(0.3)
    assert log_tags(db) == ["b"]


def test_default_retry_interval_is_error_count_to_the_fourth_plus_three(
    db: Connection, que_worker: Any
) -> None:
    class Fails(Job):
        def run(self) -> None:
            raise RuntimeError("no")

    job = Fails.enqueue(conn=db.raw)
    que_worker()
    wait_until(lambda: scalar(db, "SELECT error_count FROM que_jobs WHERE id = %s", job.id) == 1)
    delay = scalar(
        db,
        "SELECT extract(epoch FROM run_at - now()) FROM que_jobs WHERE id = %s",
        job.id,
    )
    assert 2 < float(delay) <= 4  # 1 ** 4 + 3


def test_retry_interval_and_max_retries_per_class(db: Connection, que_worker: Any) -> None:
    class Flaky(Job):
        retry_interval = 600
        maximum_retry_count = 0

    class Flaky2(Job):
        retry_interval = 600
        maximum_retry_count = 5

        def run(self) -> None:
            raise RuntimeError("flaky")

    a = Flaky.enqueue(conn=db.raw)  # run() not implemented: an error, expired at once
    b = Flaky2.enqueue(conn=db.raw)
    que_worker()
    wait_until(lambda: scalar(db, "SELECT count(*) FROM que_jobs WHERE error_count = 1") == 2)
    rows = dict(
        (r[0], r[1:])
        for r in db.execute(
            "SELECT id, expired_at IS NOT NULL, extract(epoch FROM run_at - now()) "
            "FROM que_jobs"
        )
    )
    assert rows[a.id][0] is True
    assert rows[b.id][0] is False and float(rows[b.id][1]) > 500


@pytest.mark.parametrize("how", ["finish", "expire", "retry_in"])
def test_job_resolution_methods(db: Connection, que_worker: Any, how: str) -> None:
    class Resolves(Job):
        def run(self) -> None:
            if how == "retry_in":
                self.retry_in(3600)
            else:
                getattr(self, how)()

    job = Resolves.enqueue(conn=db.raw)
    que_worker()
    column = {"finish": "finished_at IS NOT NULL", "expire": "expired_at IS NOT NULL",
              "retry_in": "run_at > now() + interval '3000 seconds'"}[how]
    wait_until(lambda: scalar(db, f"SELECT {column} FROM que_jobs WHERE id = %s", job.id))
    assert scalar(db, "SELECT error_count FROM que_jobs WHERE id = %s", job.id) == 0


def test_keep_finished_setting(db: Connection, que_worker: Any, monkeypatch: Any) -> None:
    monkeypatch.setattr(settings, "keep_finished", True)
    job = PlainJob.enqueue("kept", conn=db.raw)
    que_worker()
    wait_until(lambda: scalar(db, "SELECT finished_at IS NOT NULL FROM que_jobs WHERE id = %s",
                            job.id))


def test_unknown_job_class_is_the_jobs_error(db: Connection, que_worker: Any) -> None:
    db.execute(
        "INSERT INTO que_jobs (job_class, args, job_schema_version) "
        "VALUES ('os.system', '[\"touch /tmp/que-pwned\"]', 2)"
    )
    PlainJob.enqueue("after", conn=db.raw)
    w = que_worker()
    wait_until(lambda: scalar(db, "SELECT error_count FROM que_jobs WHERE job_class = 'os.system'"))
    message = scalar(db, "SELECT last_error_message FROM que_jobs WHERE job_class = 'os.system'")
    assert "unknown job class 'os.system'" in message
    wait_until(lambda: log_tags(db) == ["after"])
    assert w.running


def test_no_advisory_lock_left_after_a_run(db: Connection, que_worker: Any) -> None:
    for i in range(50):
        PlainJob.enqueue(i, conn=db.raw)
    FailingTwice.enqueue("x", conn=db.raw)
    w = que_worker()
    wait_until(lambda: job_count(db) == 1 and len(log_tags(db)) >= 51)
    w.stop()
    assert advisory_locks(db) == 0
    assert scalar(db, "SELECT count(*) FROM que_lockers") == 0


def test_foreign_notification_payloads_are_ignored(db: Connection, que_worker: Any) -> None:
    w = que_worker(poll_interval=60)
    pid = wait_until(lambda: scalar(db, "SELECT pid FROM que_lockers WHERE listening"))
    for payload in ["not json", "[1,2]", '{"message_type":"job_available"}',
                    '{"message_type":"other","queue":"default","priority":1}', ""]:
        db.execute("SELECT pg_notify(%s, %s)", (f"que_listener_{pid}", payload))
    PlainJob.enqueue("still works", conn=db.raw)
    wait_until(lambda: log_tags(db) == ["still works"], within=3)
    assert w.running and w.listener is not None and w.listener.is_alive()


def test_graceful_stop_lets_running_jobs_finish(db: Connection, que_worker: Any) -> None:
    SleepJob.enqueue("slow", 1.0, conn=db.raw)
    for i in range(5):
        SleepJob.enqueue(f"queued{i}", 0.0, conn=db.raw, priority=200)
    w = que_worker(worker_priorities=[None])
    wait_until(lambda: log_tags(db, "start") == ["slow"])
    assert w.stop() is True
    assert log_tags(db, "done") == ["slow"]
    assert job_count(db) == 5  # the claimed but unstarted ones were released, not run
    assert advisory_locks(db) == 0
    assert scalar(db, "SELECT count(*) FROM que_lockers") == 0


@pytest.mark.per_adapter
def test_stop_deadline_releases_a_hung_job(db: Connection, que_worker: Any) -> None:
    SleepJob.enqueue("hung", 5.0, conn=db.raw)
    w = que_worker()
    wait_until(lambda: log_tags(db, "start") == ["hung"])
    began = time.monotonic()
    assert w.stop(timeout=0.5) is False
    assert time.monotonic() - began < 3
    # The locker session is closed: no lock of ours remains.
    assert advisory_locks(db) == 0


@pytest.mark.per_adapter
def test_reconnects_after_pg_terminate_backend(db: Connection, que_worker: Any) -> None:
    w = que_worker()
    PlainJob.enqueue("before", conn=db.raw)
    wait_until(lambda: log_tags(db) == ["before"])
    sessions = ("FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()")
    # The listener's session and the six threads' at least; the watchdog and
    # (when the process has async job classes) the event loop have more.
    wait_until(lambda: scalar(db, "SELECT count(*) " + sessions) >= 7)
    killed = scalar(db, "SELECT count(pg_terminate_backend(pid)) " + sessions)
    assert killed >= 7
    PlainJob.enqueue("after", conn=db.raw)
    wait_until(lambda: log_tags(db) == ["before", "after"], within=15)
    assert w.running
    wait_until(lambda: scalar(db, "SELECT count(*) FROM que_lockers") == 1)


def test_two_workers_share_the_work_without_running_a_job_twice(
    db: Connection, que_worker: Any
) -> None:
    SelfResolving.enqueue_many([[i] for i in range(300)], conn=db.raw)
    que_worker()
    que_worker()
    wait_until(lambda: job_count(db) == 0, within=30)
    tags = log_tags(db)
    assert len(tags) == 300 and len(set(tags)) == 300


@pytest.mark.per_adapter
def test_job_args_round_trip(db: Connection, que_worker: Any) -> None:
    seen: list[Any] = []

    class Echo(Job):
        def run(self, *args: Any, **kwargs: Any) -> None:
            seen.append((args, kwargs))

    value = {"nested": [1, 2.5, None, True, "ü\"'\\%s$1"], "big": 2**63 - 1}
    Echo.enqueue(value, [value], conn=db.raw, key=value)
    que_worker()
    wait_until(lambda: seen)
    assert seen == [((value, [value]), {"key": value})]
    assert json.loads(json.dumps(seen[0][0][0])) == value


def test_jobs_of_another_row_format_are_reported(
    db: Connection, que_worker: Any, caplog: Any
) -> None:
    db.execute(
        "INSERT INTO que_jobs (job_class, job_schema_version) "
        "VALUES ('conformance.jobs.PlainJob', 1)"
    )
    with caplog.at_level("WARNING", logger="que_core.listener"):
        que_worker()
    assert "job_schema_version 1" in caplog.text


class _Counting:
    """An adapter whose sessions note each named statement they run."""

    def __init__(self, adapter: Any) -> None:
        from que_core.sql import queries

        self._adapter = adapter
        self.name = adapter.name
        self._names = {sql: name for name, sql in queries().items()}
        self.ran: list[tuple[str, Any]] = []

    def connect(self, dsn: str) -> Any:
        conn = self._adapter.connect(dsn)
        execute = conn.execute

        def counted(sql: str, params: Any = ()) -> Any:
            self.ran.append((self._names.get(sql, "?"), params))
            return execute(sql, params)

        conn.execute = counted
        return conn

    def wrap(self, raw: Any) -> Any:
        return self._adapter.wrap(raw)


def test_unresolved_jobs_are_deleted_in_batches_with_the_next_claim(
    db: Connection, adapter: Any, dsn: str
) -> None:
    from que_core import Worker

    for i in range(200):
        PlainJob.enqueue(i, conn=db.raw)
    counting = _Counting(adapter)
    w = Worker(dsn, adapter=counting, poll_interval=0.2)  # type: ignore[arg-type]
    w.start()
    try:
        wait_until(lambda: job_count(db) == 0 and len(log_tags(db)) == 200)
    finally:
        w.stop(timeout=10)
    batches = [p[0] for name, p in counting.ran if name == "next_jobs" and p[0]]
    deleted = [i for batch in batches for i in batch]
    assert sorted(deleted) == sorted(set(deleted)) and len(deleted) == 200
    assert len(batches) < len(deleted)  # several jobs per commit
    # No other statement of the worker's per job ("?": the jobs' own INSERTs;
    # backend_pid: once per session; the watchdog's and the listener's rounds
    # come by the second, more of them the longer a loaded machine takes).
    others = [n for n, _ in counting.ran if n not in ("?", "next_jobs")]
    assert len(others) < len(deleted) / 4, sorted(others)
    assert advisory_locks(db) == 0


def test_a_job_whose_session_dies_before_its_outcome_is_written_runs_again(
    db: Connection, que_worker: Any
) -> None:
    """The batch's window: a job that returned, whose session is lost
    before the next claim wrote its outcome, is still waiting, and is run
    again (at least once, as after a crash); it is never lost."""
    w = que_worker(poll_interval=0.2)
    wait_until(lambda: scalar(db, "SELECT count(*) FROM que_lockers") == 1)
    PlainJob.enqueue_many([[f"s{i}"] for i in range(300)], conn=db.raw)
    wait_until(lambda: len(log_tags(db)) >= 20)
    pids = [t.backend_pid for t in w.threads if t.backend_pid]
    db.execute("SELECT pg_terminate_backend(p) FROM unnest(%s::integer[]) AS p", (pids,))
    wait_until(lambda: job_count(db) == 0, within=30)
    assert set(log_tags(db)) == {f"s{i}" for i in range(300)}  # every job ran, none lost
    w.stop(timeout=10)
    assert advisory_locks(db) == 0


def test_a_job_row_that_cannot_be_deleted_does_not_stop_the_others(
    db: Connection, que_worker: Any
) -> None:
    """A batch delete that fails (here a user's trigger refuses one row)
    falls back to one row at a time: the others are deleted, the refused
    one is left waiting (set aside), and the worker keeps working."""
    db.execute("""
        CREATE FUNCTION refuse_delete() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          IF OLD.args ->> 0 = 'undeletable' THEN RAISE EXCEPTION 'refused'; END IF;
          RETURN OLD;
        END $$""")
    db.execute("CREATE TRIGGER refuse_delete BEFORE DELETE ON que_jobs "
               "FOR EACH ROW EXECUTE FUNCTION refuse_delete()")
    PlainJob.enqueue_many([["undeletable"]] + [[f"p{i}"] for i in range(40)], conn=db.raw)
    w = que_worker(poll_interval=0.2)
    wait_until(lambda: job_count(db) == 1 and {f"p{i}" for i in range(40)} <= set(log_tags(db)))
    assert scalar(db, "SELECT args ->> 0 FROM que_jobs") == "undeletable"
    assert w.running
    PlainJob.enqueue("after", conn=db.raw)  # still working
    wait_until(lambda: "after" in log_tags(db))
    w.stop(timeout=10)
    assert advisory_locks(db) == 0
