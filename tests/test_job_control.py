"""Job control with in-process workers: max_run_time stops every kind of
job, cancel stops or prevents one, pause and resume; against the real
server. (Worker processes: tests/test_job_control_processes.py.)"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

import que_core
from conformance.fixtures import scalar, wait_until
from que_core import Job, admin, control
from que_core.connection import Adapter, Connection
from tests.ctljobs import LoopJob, Polite, Quick, SleepLong, Spin, SqlSleep
from tests.helpers import advisory_locks, log_tags

#: A stop is due within the limit plus this (the issue's "about one second").
SLACK = 1.0


def _one_thread(que_worker: Any, **kw: Any) -> Any:
    """A worker with one thread that takes any priority: the slot reused, or not."""
    return que_worker(worker_priorities=[None], **kw)


def _error(conn: Connection, job_id: int) -> tuple[int, str | None, bool]:
    ((count, message, later),) = conn.execute(
        "SELECT error_count, last_error_message, run_at > now() FROM que_jobs WHERE id = %s",
        (job_id,))
    return int(count), message, bool(later)


def _stopped_after(conn: Connection, job_id: int) -> float:
    """Seconds from the job's start (its 'start' row) until its error is seen."""
    wait_until(lambda: _error(conn, job_id)[0] == 1, within=10, interval=0.01)
    return float(scalar(conn, "SELECT extract(epoch FROM clock_timestamp() - at) "
                        "FROM conformance_log WHERE job_id = %s AND event = 'start'", job_id))


def _idle_in_transaction(conn: Connection) -> int:
    return int(scalar(conn, "SELECT count(*) FROM pg_stat_activity WHERE datname = "
                            "current_database() AND state LIKE 'idle in transaction%%'"))


def _check_stopped(db: Connection, job_id: int, limit: float) -> None:
    took = _stopped_after(db, job_id)
    assert took < limit + SLACK, f"stopped {took:.2f} s after its start (limit {limit})"
    count, message, later = _error(db, job_id)
    unit = "second" if limit == 1 else "seconds"
    assert (count, message, later) == (1, f"JobTimedOut: timed out after {limit:g} {unit}",
                                       True)
    backtrace = scalar(db, "SELECT last_error_backtrace FROM que_jobs WHERE id = %s", job_id)
    assert "timed out" in backtrace


def _slot_reused(db: Connection) -> None:
    """A job enqueued now runs at once: the one thread's slot is free."""
    job = Quick.enqueue("next", conn=db.raw)
    wait_until(lambda: scalar(db, "SELECT count(*) FROM conformance_log WHERE job_id = %s", job.id),
             within=SLACK + 1)


def _no_leftovers(db: Connection) -> None:
    """No job lock held, no transaction left open (the worker is idle)."""
    wait_until(lambda: advisory_locks(db) == 0, within=3)
    assert _idle_in_transaction(db) == 0


def test_python_loop_is_interrupted(db: Connection, que_worker: Any) -> None:
    job = LoopJob.enqueue(conn=db.raw)
    worker = _one_thread(que_worker)
    _check_stopped(db, job.id, 1)
    _slot_reused(db)
    _no_leftovers(db)
    assert [t.name for t in worker.threads] == ["que-worker-0"]
    assert not any(t.guard.abandoned for t in worker.threads)  # interrupted, not given up


def test_time_sleep_thread_is_replaced(db: Connection, que_worker: Any,
                                       caplog: pytest.LogCaptureFixture) -> None:
    # time.sleep in a thread cannot take an asynchronous exception: the thread
    # is given up, its session ended and its slot given to a new thread.
    job = SleepLong.enqueue("sleep", seconds=3.0, conn=db.raw)
    worker = _one_thread(que_worker)
    first = worker.threads[0]
    _check_stopped(db, job.id, 1)
    _slot_reused(db)
    _no_leftovers(db)
    assert worker.threads[0] is not first and first.guard.abandoned
    assert "did not stop within" in caplog.text
    # When its sleep ends the stop goes off in the job's code: it writes nothing.
    first.join(5)
    assert not first.is_alive()
    assert log_tags(db, "woke") == []
    assert _error(db, job.id)[0] == 1


def test_sql_statement_is_cancelled_and_rolled_back(db: Connection, que_worker: Any,
                                                    adapter: Adapter) -> None:
    job = SqlSleep.enqueue(conn=db.raw)
    _one_thread(que_worker)
    _check_stopped(db, job.id, 1)
    # Its transaction (which held the job's row) was rolled back.
    db.execute("SET lock_timeout = 1000")
    db.execute("UPDATE que_jobs SET priority = priority WHERE id = %s", (job.id,))
    _slot_reused(db)
    _no_leftovers(db)


def test_worker_default_and_expiry(db: Connection, que_worker: Any) -> None:
    class Slow(Job):
        maximum_retry_count = 0

        def run(self) -> None:
            from conformance.jobs import record

            record(self, "slow", "start")
            while True:
                pass

    job = Slow.enqueue(conn=db.raw)
    _one_thread(que_worker, max_run_time=0.5)
    wait_until(lambda: scalar(db, "SELECT expired_at IS NOT NULL FROM que_jobs WHERE id = %s",
                            job.id), within=0.5 + SLACK + 1)
    assert scalar(db, "SELECT last_error_message FROM que_jobs WHERE id = %s", job.id) \
        == "JobTimedOut: timed out after 0.5 seconds"


def test_bad_max_run_time_is_refused() -> None:
    with pytest.raises(que_core.errors.ConfigurationError, match="max_run_time -1"):
        class Bad(Job, register=False):
            max_run_time = -1
    with pytest.raises(que_core.errors.ConfigurationError, match="max_run_time 'x'"):
        que_core.Worker("postgresql://localhost/x", max_run_time="x")  # type: ignore[arg-type]


# -- cancel -----------------------------------------------------------------------


def _cancel_marker(conn: Connection, job_id: int) -> dict[str, Any] | None:
    text = scalar(conn, "SELECT (data -> 'cancelled')::text FROM que_jobs WHERE id = %s",
                  job_id)
    return None if text is None else json.loads(text)


def test_cancel_a_waiting_job(db: Connection, que_worker: Any) -> None:
    job = Quick.enqueue("never", conn=db.raw)
    result = que_core.cancel(job.id, conn=db.raw, reason="not wanted")
    assert (result.result, result.message) == (
        "cancelled", f"cancelled job {job.id}: it was waiting and will never run")
    marker = _cancel_marker(db, job.id)
    assert marker is not None and marker["reason"] == "not wanted" and marker["at"].endswith("Z")
    # Ruby Que reads it as expired, so never runs it.
    assert scalar(db, "SELECT que_determine_job_state(j) FROM que_jobs AS j WHERE id = %s",
                  job.id) == "expired"
    assert [j["id"] for j in admin.list_jobs(db, admin.JobFilter(states=["cancelled"]))] \
        == [job.id]
    assert que_core.cancel(job.id, conn=db.raw).result == "already_cancelled"
    _one_thread(que_worker)
    time.sleep(0.5)
    assert log_tags(db) == []
    assert que_core.cancel(job.id + 1000, conn=db.raw).result == "missing"


def test_cancel_ended_jobs_is_a_no_op(db: Connection) -> None:
    finished = Quick.enqueue("f", conn=db.raw)
    expired = Quick.enqueue("e", conn=db.raw)
    db.execute("UPDATE que_jobs SET finished_at = now() WHERE id = %s", (finished.id,))
    db.execute("UPDATE que_jobs SET expired_at = now() WHERE id = %s", (expired.id,))
    results = control.cancel_jobs([expired.id, finished.id, finished.id], conn=db.raw)
    assert [(r.id, r.result, r.changed) for r in results] == [
        (finished.id, "finished", False), (expired.id, "expired", False)]
    assert _cancel_marker(db, finished.id) is None


def test_cancel_a_running_job(db: Connection, que_worker: Any) -> None:
    job = Spin.enqueue("spin", conn=db.raw)
    _one_thread(que_worker)
    wait_until(lambda: log_tags(db, "start") == ["spin"])
    start = time.monotonic()
    result = control.cancel_jobs([job.id], conn=db.raw, reason="ops", wait=5)[0]
    assert result.result == "stopped", result
    assert time.monotonic() - start < 0.5 + SLACK  # the grace to see self.cancelled, and a stop
    assert _cancel_marker(db, job.id)["reason"] == "ops"  # type: ignore[index]
    assert scalar(db, "SELECT error_count FROM que_jobs WHERE id = %s", job.id) == 0
    assert log_tags(db, "ran") == []
    _slot_reused(db)
    _no_leftovers(db)


def test_cancelled_job_sees_it_and_returns(db: Connection, que_worker: Any) -> None:
    job = Polite.enqueue("polite", conn=db.raw)
    _one_thread(que_worker)
    wait_until(lambda: log_tags(db, "start") == ["polite"])
    assert control.cancel_jobs([job.id], conn=db.raw, wait=5)[0].result == "stopped"
    assert log_tags(db, "saw cancel") == ["polite"]
    assert _cancel_marker(db, job.id) == {"at": _cancel_marker(db, job.id)["at"],  # type: ignore[index]
                                          "reason": None}


def test_cancel_without_listen_is_polled(db: Connection, que_worker: Any) -> None:
    job = Spin.enqueue("spin", conn=db.raw)
    _one_thread(que_worker, listen=False)
    wait_until(lambda: log_tags(db, "start") == ["spin"])
    assert control.cancel_jobs([job.id], conn=db.raw, wait=5)[0].result == "stopped"


def test_cancel_racing_jobs_that_finish(db: Connection, que_worker: Any,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    # Jobs that end (effect and destroy in one transaction) around the moment
    # their cancel stops them: each has exactly one outcome, effect or cancel.
    # A stop comes ~0.3-0.4 s after the start (notice, then CANCEL_GRACE):
    # 0.1-0.65 s of spinning puts jobs on both sides of it and in the race.
    from que_core import watchdog

    monkeypatch.setattr(watchdog, "CANCEL_GRACE", 0.2)
    jobs = [Spin.enqueue(i, seconds=0.1 + 0.05 * i, conn=db.raw) for i in range(12)]
    _one_thread(que_worker)  # each cancel comes just after its job started
    results = {}
    for job in jobs:
        wait_until(lambda j=job: scalar(
            db, "SELECT count(*) FROM conformance_log WHERE job_id = %s", j.id), within=20,
            interval=0.005)
        results[job.id] = control.cancel_jobs([job.id], conn=db.raw, wait=5)[0].result
    wait_until(lambda: advisory_locks(db) == 0)
    kinds = set()
    for job in jobs:
        ran = scalar(db, "SELECT count(*) FROM conformance_log WHERE job_id = %s AND event = 'ran'",
                     job.id)
        marker = _cancel_marker(db, job.id)
        row = scalar(db, "SELECT count(*) FROM que_jobs WHERE id = %s", job.id)
        if ran:
            assert (ran, row, results[job.id]) == (1, 0, results[job.id])
            assert results[job.id] in ("missing", "ended"), (job.id, results[job.id])
        else:
            assert marker is not None, (job.id, results[job.id])
            assert results[job.id] in ("stopped", "cancelled"), (job.id, results[job.id])
        kinds.add(bool(ran))
    assert kinds == {True, False}, results  # both ends happened


# -- pause ------------------------------------------------------------------------


def test_pause_and_resume(db: Connection, que_worker: Any) -> None:
    assert control.pause("a", conn=db.raw, reason="incident") is True
    assert control.pause("a", conn=db.raw) is False
    que_worker(queues=["a", "b"], worker_priorities=[None], poll_interval=30)
    Quick.enqueue("a1", conn=db.raw, queue="a")
    Quick.enqueue("b1", conn=db.raw, queue="b")
    wait_until(lambda: log_tags(db) == ["b1"])
    time.sleep(0.5)
    assert log_tags(db) == ["b1"]
    (a,) = [s for s in control.list_queues(conn=db.raw) if s.queue == "a"]
    assert (a.paused, a.reason, a.ready) == (True, "incident", 1)
    start = time.monotonic()
    assert control.resume("a", conn=db.raw) is True
    wait_until(lambda: log_tags(db) == ["b1", "a1"], within=3)
    assert time.monotonic() - start < SLACK  # told by NOTIFY, not its 30 s poll
    assert control.resume("a", conn=db.raw) is False


# -- retention --------------------------------------------------------------------


def _kept(db: Connection) -> list[int]:
    """Three of each kind: ended 8 days ago, 31 days ago, and just now."""
    ids = []
    for age in ("8 days", "31 days", "0 days"):
        for column in ("finished_at", "expired_at"):
            job = Quick.enqueue(age, conn=db.raw)
            db.execute(f"UPDATE que_jobs SET {column} = now() - interval '{age}' WHERE id = %s",
                       (job.id,))
            ids.append(job.id)
    cancelled = Quick.enqueue("c", conn=db.raw)
    que_core.cancel(cancelled.id, conn=db.raw)
    db.execute("UPDATE que_jobs SET expired_at = now() - interval '31 days' WHERE id = %s",
               (cancelled.id,))
    return [*ids, cancelled.id]


def _left(db: Connection) -> list[int]:
    return sorted(r[0] for r in db.execute("SELECT id FROM que_jobs"))


def test_workers_prune_with_their_defaults(db: Connection, que_worker: Any) -> None:
    k = dict(zip(("f8", "e8", "f31", "e31", "f0", "e0", "c31"), _kept(db), strict=True))
    waiting = Quick.enqueue("waiting", conn=db.raw, queue="nobody").id
    que_worker(prune_interval=0.2)  # finished after 7 days, expired after 30
    wait_until(lambda: _left(db) == [k["e8"], k["f0"], k["e0"], waiting], within=10)


def test_retention_settings_and_one_pruner_at_a_time(db: Connection, que_worker: Any,
                                                      adapter: Adapter, dsn: str) -> None:
    k = dict(zip(("f8", "e8", "f31", "e31", "f0", "e0", "c31"), _kept(db), strict=True))
    holder = adapter.connect(dsn)
    try:
        assert scalar(holder, "SELECT pg_try_advisory_lock(1903518976, 3)")  # another pruner
        worker = que_worker(prune_interval=0.2, retain_finished="never", retain_expired="1d")
        time.sleep(1.0)
        assert len(_left(db)) == 7  # it waits its turn
        assert worker.janitor is not None and worker.janitor.last is None
        holder.execute("SELECT pg_advisory_unlock(1903518976, 3)")
        wait_until(lambda: _left(db) == [k["f8"], k["f31"], k["f0"], k["e0"]], within=10)
    finally:
        holder.close()


def test_prune_on_demand_in_batches(db: Connection) -> None:
    from que_core import retention

    ids = [Quick.enqueue(i, conn=db.raw).id for i in range(25)]
    db.execute("UPDATE que_jobs SET finished_at = now() - interval '2 hours' WHERE id = ANY(%s)",
               (ids[:20],))
    pruned = retention.prune(db, retention.Retention.of("1h", None), batch=7)
    assert (pruned.finished, pruned.expired, pruned.batches) == (20, 0, 3)
    assert _left(db) == ids[20:]
    assert control.prune(conn=db.raw, older_than="1h").total == 0
    with pytest.raises(ValueError, match="'7x' is not an age"):
        control.prune(conn=db.raw, older_than="7x")
    with pytest.raises(que_core.errors.ConfigurationError, match="retain_expired: 'soon'"):
        que_core.Worker("postgresql://localhost/x", retain_expired="soon")


@pytest.mark.asyncio
async def test_acancel(adapter: Adapter, dsn: str, db: Connection) -> None:
    psycopg = pytest.importorskip("psycopg")
    job = Quick.enqueue("a", conn=db.raw)
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as aconn:
        result = await que_core.acancel(job.id, conn=aconn, reason="async")
    assert result.result == "cancelled"
    assert _cancel_marker(db, job.id)["reason"] == "async"  # type: ignore[index]


def test_a_forged_control_message_stops_nothing(db: Connection, que_worker: Any,
                                                caplog: pytest.LogCaptureFixture) -> None:
    # Anyone may NOTIFY que_core_control: a cancel message only makes workers
    # read the requests, and there is none for this job.
    job = Spin.enqueue("spin", seconds=2.0, conn=db.raw)
    _one_thread(que_worker)
    wait_until(lambda: log_tags(db, "start") == ["spin"])
    db.execute("""SELECT pg_notify('que_core_control', '{"message_type": "cancel"}')""")
    db.execute("SELECT pg_notify('que_core_control', 'not json')")
    wait_until(lambda: log_tags(db, "ran") == ["spin"], within=10)
    assert _cancel_marker(db, job.id) is None
    assert "ignoring unexpected notification on que_core_control" in caplog.text
