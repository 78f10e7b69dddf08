"""``async def`` jobs worked by ``que work`` (a real subprocess) next to sync
jobs, once per adapter with an async side (``--adapter`` picks the one that
runs them): their sessions, resolving themselves, kill -9, a job that blocks
the loop, shutdown with async jobs running, and job control (max_run_time,
cancel)."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conformance.fixtures import scalar, wait_until
from conformance.jobs import SelfResolving
from que_core import plugins
from que_core.connection import Connection
from que_core.foreground import EXIT_UNFINISHED
from que_core.testing import databases
from tests.helpers import advisory_locks, job_count, log_tags, logged_database, que_work_processes
from tests.test_cli_admin import que
from tests.test_cli_work import _Reader

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module", params=[
    n for n in databases.adapter_names() if n in plugins.async_adapters()])
def async_adapter(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def adb(async_adapter: str) -> Iterator[tuple[str, Connection]]:
    """A migrated database with conformance_log, and a psycopg session on it."""
    with logged_database() as db:
        yield db


@pytest.fixture
def spawn(adb: tuple[str, Connection], async_adapter: str) -> Iterator[Any]:
    with que_work_processes(adb[0], async_adapter, ("conformance.jobs", "tests.ajobs")) as start:
        yield start


def _registered(db: Connection, n: int = 1) -> None:
    wait_until(lambda: scalar(db, "SELECT count(*) FROM que_lockers") == n, within=30)


def test_async_jobs_run_next_to_sync_ones(adb: Any, spawn: Any, ajobs: Any,
                                          async_adapter: str) -> None:
    _, db = adb
    proc = spawn()
    _registered(db)
    out = _Reader(proc)
    for i in range(20):
        ajobs.AsyncRecordJob.enqueue(f"a{i}", conn=db.raw)
        SelfResolving.enqueue(f"s{i}", conn=db.raw)
    ajobs.AsyncPlainJob.enqueue("kind", conn=db.raw)
    for how in ("finish", "expire", "retry_in", "destroy"):
        ajobs.AsyncResolveJob.enqueue(how, how, conn=db.raw)
    wait_until(lambda: len(log_tags(db)) == 40 and scalar(
        db, "SELECT count(*) FROM conformance_log WHERE tag = event AND tag <> 'kind'") == 4,
        within=30)
    assert sorted(log_tags(db)) == sorted([f"a{i}" for i in range(20)]
                                          + [f"s{i}" for i in range(20)])
    # self.conn is the adapter's own driver connection.
    wait_until(lambda: log_tags(db, async_adapter) == ["kind"])
    def resolved() -> list[Any]:
        return db.execute("SELECT args->>0, finished_at IS NOT NULL, expired_at IS NOT NULL, "
                          "run_at > now() + interval '1 hour' - interval '1 minute', "
                          "error_count FROM que_jobs ORDER BY 1")

    # The destroying job may still be running when the others have logged.
    wait_until(lambda: "destroy" not in [r[0] for r in resolved()])
    rows = resolved()
    assert rows == [("expire", False, True, False, 0), ("finish", True, False, False, 0),
                    ("retry_in", False, False, True, 0)]
    # Threads ran the sync jobs, the loop the async ones: nobody failed either kind.
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0
    out.thread.join(10)
    assert f"async_adapter={async_adapter}" in out.text
    assert "errored" not in out.text, out.text
    assert advisory_locks(db) == 0


def test_an_async_job_destroyed_in_its_transaction_commits_once_under_kill_9(
        adb: Any, spawn: Any, ajobs: Any) -> None:
    _, db = adb
    n = 300
    ajobs.AsyncRecordJob.enqueue_many([[f"k{i}"] for i in range(n)], conn=db.raw)
    proc = spawn()
    # Killed mid-drain: some jobs done, some in their transactions.
    wait_until(lambda: scalar(db, "SELECT count(*) FROM conformance_log") >= 20, within=30,
             interval=0.005)
    proc.kill()
    proc.wait(10)
    done_before = scalar(db, "SELECT count(*) FROM conformance_log")
    assert done_before < n, "the kill came too late to test anything"
    spawn()
    wait_until(lambda: job_count(db) == 0, within=60)
    ran = db.execute("SELECT tag, count(*) FROM conformance_log GROUP BY tag HAVING count(*) <> 1")
    assert ran == []  # each effect exactly once
    assert scalar(db, "SELECT count(DISTINCT tag) FROM conformance_log") == n


def test_a_job_blocking_the_loop_is_named_and_stalls_no_thread(
        adb: Any, spawn: Any, ajobs: Any) -> None:
    _, db = adb
    proc = spawn()
    _registered(db)
    out = _Reader(proc)
    blocker = ajobs.AsyncBlockingJob.enqueue("blocker", 3.0, conn=db.raw)
    wait_until(lambda: "is blocking the event loop" in out.text, within=20)
    # While the loop is blocked, a sync job is worked at once by a thread.
    SelfResolving.enqueue("sync", conn=db.raw)
    wait_until(lambda: log_tags(db) == ["sync"], within=2)
    wait_until(lambda: log_tags(db) == ["sync", "blocker"], within=10)
    wait_until(lambda: "blocked the event loop for" in out.text)
    assert (f"job tests.ajobs.AsyncBlockingJob id={blocker.id} is blocking the event loop"
            in out.text)
    assert f"job tests.ajobs.AsyncBlockingJob id={blocker.id} blocked the event loop for" \
        in out.text
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0


def test_shutdown_lets_async_jobs_finish(adb: Any, spawn: Any, ajobs: Any) -> None:
    _, db = adb
    proc = spawn("--shutdown-timeout", "20")
    _registered(db)
    for i in range(3):
        ajobs.AsyncSleepJob.enqueue(f"z{i}", 1.0, conn=db.raw)
    wait_until(lambda: len(log_tags(db, "start")) == 3)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0
    assert sorted(log_tags(db, "done")) == ["z0", "z1", "z2"]
    assert job_count(db) == 0


def test_shutdown_cancels_async_jobs_at_the_deadline_and_they_run_again(
        adb: Any, spawn: Any, ajobs: Any) -> None:
    _, db = adb
    proc = spawn("--shutdown-timeout", "0.5")
    _registered(db)
    job = ajobs.AsyncHangFirstJob.enqueue("hang", conn=db.raw)
    wait_until(lambda: log_tags(db, "start") == ["hang"])
    proc.send_signal(signal.SIGINT)
    assert proc.wait(20) == EXIT_UNFINISHED
    text = proc.stdout.read().decode() if proc.stdout else ""
    assert "shutdown deadline passed with 1 async job(s) still running" in text
    assert f"job cancelled: tests.ajobs.AsyncHangFirstJob id={job.id}" in text
    # Not lost, no error recorded, its lock released: the next worker runs it at once.
    assert db.execute("SELECT error_count FROM que_jobs") == [(0,)]
    wait_until(lambda: advisory_locks(db) == 0)
    spawn()
    wait_until(lambda: log_tags(db, "done") == ["hang"], within=30)
    assert job_count(db) == 0


# -- job control: max_run_time and cancel of async def jobs -------------------------
# The job's task is cancelled (and its statement), the error or the cancel
# recorded, the loop's slot free again, no lock or transaction left.


def _timed_out(db: Any, job_id: int) -> float:
    wait_until(lambda: scalar(db, "SELECT error_count FROM que_jobs WHERE id = %s", job_id) == 1,
               within=10, interval=0.01)
    took = float(scalar(db, "SELECT extract(epoch FROM clock_timestamp() - at) "
                        "FROM conformance_log WHERE job_id = %s AND event = 'start'", job_id))
    assert scalar(db, "SELECT last_error_message FROM que_jobs WHERE id = %s", job_id) \
        == "JobTimedOut: timed out after 1 second"
    return took


def test_async_jobs_time_out(adb: Any, spawn: Any, ajobs: Any) -> None:
    _, db = adb
    spawn("--async-concurrency", "1")
    _registered(db)
    awaiting = ajobs.AsyncTimesOut.enqueue("await", conn=db.raw)
    assert _timed_out(db, awaiting.id) < 2.0
    in_sql = ajobs.AsyncTimesOut.enqueue("sql", sql=True, conn=db.raw)
    assert _timed_out(db, in_sql.id) < 2.0
    # Its transaction (which held its row) was rolled back; the one slot is free.
    db.execute("SET lock_timeout = 1000")
    db.execute("UPDATE que_jobs SET priority = priority WHERE id = %s", (in_sql.id,))
    ajobs.AsyncPlainJob.enqueue("next", conn=db.raw)
    wait_until(lambda: len(db.execute("SELECT 1 FROM conformance_log WHERE tag = 'next'")) == 1,
               within=3)
    assert log_tags(db, "woke") == []
    wait_until(lambda: advisory_locks(db) == 0)
    assert scalar(db, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                      "AND state LIKE 'idle in transaction%%'") == 0


def test_cancel_async_jobs(adb: Any, spawn: Any, ajobs: Any, async_adapter: str) -> None:
    dsn, db = adb
    spawn()
    _registered(db)
    base = ("--dsn", dsn, "--adapter", "psycopg")
    sleeper = ajobs.AsyncSleepJob.enqueue("sleeper", 60, conn=db.raw)
    polite = ajobs.AsyncPolite.enqueue("polite", conn=db.raw)
    wait_until(lambda: sorted(log_tags(db, "start")) == ["polite", "sleeper"], within=10)
    start = time.monotonic()
    out = que("jobs", "cancel", str(sleeper.id), str(polite.id), *base)
    assert out.stdout.splitlines() == [
        f"cancelled job {sleeper.id}: it was running, and its worker stopped it",
        f"cancelled job {polite.id}: it was running, and its worker stopped it"], out
    assert time.monotonic() - start < 10
    assert log_tags(db, "saw cancel") == ["polite"]
    assert log_tags(db, "done") == []
    assert scalar(db, "SELECT count(*) FROM que_jobs WHERE data ? 'cancelled'") == 2
    SelfResolving.enqueue("after", conn=db.raw)  # the sync side goes on
    wait_until(lambda: log_tags(db, "ran") == ["after"], within=5)
    wait_until(lambda: advisory_locks(db) == 0)
