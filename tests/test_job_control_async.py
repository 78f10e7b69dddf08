"""max_run_time and cancel for ``async def`` jobs, under ``que work`` (a real
subprocess), once per adapter with an async side: the job's task is
cancelled (and its statement), the error or the cancel recorded, the loop's
slot free again, no lock or transaction left."""

from __future__ import annotations

import time
from typing import Any

from tests.jobs import RecordJob
from tests.helpers import advisory_locks, log_tags, scalar, wait_for
from tests.test_async_worker import _registered, adb, async_adapter, spawn  # noqa: F401
from tests.test_cli_admin import que


def _timed_out(db: Any, job_id: int) -> float:
    wait_for(lambda: scalar(db, "SELECT error_count FROM que_jobs WHERE id = %s", (job_id,)) == 1,
             timeout=10, interval=0.01)
    took = float(scalar(db, "SELECT extract(epoch FROM clock_timestamp() - at) FROM test_log "
                            "WHERE job_id = %s AND event = 'start'", (job_id,)))
    assert scalar(db, "SELECT last_error_message FROM que_jobs WHERE id = %s", (job_id,)) \
        == "JobTimedOut: timed out after 1 second"
    return took


def test_async_jobs_time_out(adb: Any, spawn: Any, ajobs: Any) -> None:
    dsn, db = adb
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
    wait_for(lambda: len(db.execute("SELECT 1 FROM test_log WHERE tag = 'next'")) == 1,
             timeout=3)
    assert log_tags(db, "woke") == []
    wait_for(lambda: advisory_locks(db) == 0)
    assert scalar(db, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                      "AND state LIKE 'idle in transaction%%'") == 0


def test_cancel_async_jobs(adb: Any, spawn: Any, ajobs: Any, async_adapter: str) -> None:
    dsn, db = adb
    spawn()
    _registered(db)
    base = ("--dsn", dsn, "--adapter", "psycopg")
    sleeper = ajobs.AsyncSleepJob.enqueue("sleeper", 60, conn=db.raw)
    polite = ajobs.AsyncPolite.enqueue("polite", conn=db.raw)
    wait_for(lambda: sorted(log_tags(db, "start")) == ["polite", "sleeper"], timeout=10)
    start = time.monotonic()
    out = que("jobs", "cancel", str(sleeper.id), str(polite.id), *base)
    assert out.stdout.splitlines() == [
        f"cancelled job {sleeper.id}: it was running, and its worker stopped it",
        f"cancelled job {polite.id}: it was running, and its worker stopped it"], out
    assert time.monotonic() - start < 10
    assert log_tags(db, "saw cancel") == ["polite"]
    assert log_tags(db, "done") == []
    assert scalar(db, "SELECT count(*) FROM que_jobs WHERE data ? 'cancelled'") == 2
    RecordJob.enqueue("after", conn=db.raw)  # the sync side goes on
    wait_for(lambda: log_tags(db, "ran") == ["after"], timeout=5)
    wait_for(lambda: advisory_locks(db) == 0)
