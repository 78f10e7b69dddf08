"""Kept results (keep_result) and waiting for them: job.result(),
job.aresult(), que_core.result() from another process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from typing import Any

import pytest

import que_core
from conformance.fixtures import scalar, wait_until
from conformance.jobs import AddJob, FailOnceJob, PlainJob, ReturnsObjectJob, SlowAddJob
from que_core import results
from que_core.connection import Adapter, Connection
from que_core.errors import ConfigurationError, JobFailed, ResultUnavailable

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def slow_recheck(monkeypatch: pytest.MonkeyPatch) -> None:
    """No re-read of the row for a minute: a wait that ends sooner was woken
    by its NOTIFY."""
    monkeypatch.setattr(results, "RECHECK", 60.0)


def test_result_of_a_worked_job(conn: Connection, que_worker: Any, slow_recheck: None) -> None:
    que_worker(worker_count=2)
    job = AddJob.enqueue(2, 3, conn=conn.raw)
    start = time.monotonic()
    assert job.result(timeout=10) == 5
    assert time.monotonic() - start < 10
    assert conn.execute("SELECT que_core_result::text, finished_at IS NOT NULL FROM que_jobs "
                        "WHERE id = %s", (job.id,)) == [("5", True)]
    # Kept until retention deletes it: asked again, the same.
    assert que_core.result(job.id, conn=conn.raw, timeout=0) == 5


def test_wait_started_before_the_job_runs_is_woken(conn: Connection, que_worker: Any,
                                                   adapter: Adapter, dsn: str,
                                                   slow_recheck: None) -> None:
    job = SlowAddJob.enqueue(20, 22, 0.5, conn=conn.raw)
    got: list[Any] = []
    waiter = adapter.connect(dsn)
    t = threading.Thread(target=lambda: got.append(que_core.result(job.id, conn=waiter,
                                                                   timeout=20)))
    t.start()
    time.sleep(0.3)
    que_worker(worker_count=1)
    start = time.monotonic()
    t.join(20)
    waiter.close()
    assert got == [42]
    assert time.monotonic() - start < 10  # the NOTIFY, not the minute-long re-read


def test_timeout(conn: Connection) -> None:
    job = AddJob.enqueue(1, 1, conn=conn.raw)  # no worker
    start = time.monotonic()
    with pytest.raises(TimeoutError, match=f"job {job.id} did not finish within 0.3"):
        job.result(timeout=0.3)
    assert 0.3 <= time.monotonic() - start < 3
    assert scalar(conn, "SELECT count(*) FROM pg_listening_channels()") == 0  # UNLISTENed


def test_failure_carries_the_last_error(conn: Connection, que_worker: Any) -> None:
    que_worker(worker_count=1)
    job = FailOnceJob.enqueue("it broke", conn=conn.raw)
    with pytest.raises(JobFailed, match="expired without finishing: RuntimeError: it broke") \
            as info:
        job.result(timeout=10)
    assert (info.value.state, info.value.error) == ("expired", "RuntimeError: it broke")
    assert "raise RuntimeError(message)" in (info.value.backtrace or "")


def test_a_result_that_is_not_json_fails_the_attempt(conn: Connection, que_worker: Any) -> None:
    que_worker(worker_count=1)
    job = ReturnsObjectJob.enqueue(conn=conn.raw)
    with pytest.raises(JobFailed, match=r"ResultNotStorable: .*of type object, which is not "
                                        r"JSON-serialisable"):
        job.result(timeout=10)
    assert "the value run() returned" in scalar(
        conn, "SELECT last_error_message FROM que_jobs WHERE id = %s", job.id)


def test_expired_or_cancelled_by_someone_else(conn: Connection, monkeypatch: Any) -> None:
    monkeypatch.setattr(results, "RECHECK", 0.2)  # nobody notifies: the re-read sees it
    job = AddJob.enqueue(1, 1, conn=conn.raw)
    conn.execute("UPDATE que_jobs SET expired_at = now(), last_error_message = 'by hand' "
                 "WHERE id = %s", (job.id,))
    with pytest.raises(JobFailed, match="expired without finishing: by hand"):
        job.result(timeout=5)
    # A row marked cancelled (job control's mark): a JobFailed that says so.
    other = AddJob.enqueue(1, 2, conn=conn.raw)
    conn.execute("UPDATE que_jobs SET expired_at = now(), last_error_message = 'cancelled', "
                 "data = data || '{\"cancelled_at\": \"2026-01-01T00:00:00Z\"}' WHERE id = %s",
                 (other.id,))
    with pytest.raises(JobFailed, match="cancelled without finishing") as info:
        other.result(timeout=5)
    assert info.value.state == "cancelled"


def test_a_deleted_job_has_no_result(db: Connection, que_worker: Any) -> None:
    conn = db
    que_worker(worker_count=1)
    job = PlainJob.enqueue("x", conn=conn.raw)  # no keep_result: deleted when done
    wait_until(lambda: scalar(conn, "SELECT count(*) FROM que_jobs") == 0)
    with pytest.raises(ResultUnavailable, match=f"job {job.id} is not in que_jobs"):
        job.result(timeout=1)


def test_a_connection_with_uncommitted_writes_is_refused(dsn: str) -> None:
    psycopg = pytest.importorskip("psycopg")
    with psycopg.connect(dsn) as raw:  # autocommit off
        job = AddJob.enqueue(1, 1, conn=raw)  # not committed
        with pytest.raises(ConfigurationError, match="inside a transaction that has written"):
            job.result(timeout=1)
        raw.rollback()


def test_waiting_on_a_connection_with_autocommit_off(dsn: str, que_worker: Any) -> None:
    psycopg = pytest.importorskip("psycopg")
    que_worker(worker_count=1)
    with psycopg.connect(dsn) as raw:
        job = AddJob.enqueue(4, 5, conn=raw)
        raw.commit()
        assert job.result(timeout=10) == 9
        assert raw.info.transaction_status == psycopg.pq.TransactionStatus.IDLE


def test_classes_without_keep_result_notify_nothing(db: Connection, que_worker: Any,
                                                    adapter: Adapter, dsn: str) -> None:
    conn = db
    listener = adapter.connect(dsn)
    try:
        job = PlainJob.enqueue("x", conn=conn.raw)
        kept = AddJob.enqueue(1, 2, conn=conn.raw)
        for j in (job, kept):
            listener.execute(f'LISTEN "{results.channel(j.id or 0)}"')
        que_worker(worker_count=1)
        wait_until(lambda: scalar(conn, "SELECT count(*) FROM que_jobs WHERE finished_at IS NULL")
                 == 0)
        got: list[Any] = []
        deadline = time.monotonic() + 3
        while not got and time.monotonic() < deadline:
            got += listener.notifications(0.2)
        assert [n.channel for n in got] == [results.channel(kept.id or 0)]
    finally:
        listener.close()


@pytest.mark.asyncio
async def test_aresult(dsn: str, que_worker: Any, slow_recheck: None) -> None:
    psycopg = pytest.importorskip("psycopg")
    que_worker(worker_count=2)
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as raw:
        job = await AddJob.aenqueue(2, 3, conn=raw)
        assert await job.aresult(timeout=10) == 5
        slow = await SlowAddJob.aenqueue(1, 1, 2, conn=raw)
        with pytest.raises(TimeoutError):
            await slow.aresult(timeout=0.3)
        failing = await FailOnceJob.aenqueue("async boom", conn=raw)
        with pytest.raises(JobFailed, match="async boom"):
            await que_core.aresult(failing.id or 0, conn=raw, timeout=10)


_WAITER = textwrap.dedent("""
    import asyncio, json, sys
    import psycopg
    import que_core
    from que_core.errors import JobFailed
    dsn, mode, job_id, timeout = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    try:
        if mode == "sync":
            with psycopg.connect(dsn) as conn:
                value = que_core.result(job_id, conn=conn, timeout=timeout)
        else:
            async def main():
                async with await psycopg.AsyncConnection.connect(dsn) as conn:
                    return await que_core.aresult(job_id, conn=conn, timeout=timeout)
            value = asyncio.run(main())
        print(json.dumps({"result": value}))
    except TimeoutError as exc:
        print(json.dumps({"timeout": str(exc)}))
    except JobFailed as exc:
        print(json.dumps({"failed": exc.error, "state": exc.state}))
""")


def _waiter(dsn: str, mode: str, job_id: int, timeout: float) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", _WAITER, dsn, mode, str(job_id), str(timeout)],
                            cwd=ROOT, stdout=subprocess.PIPE, text=True)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_waited_on_from_another_process(conn: Connection, dsn: str, que_worker: Any,
                                        mode: str) -> None:
    pytest.importorskip("psycopg")
    ok = SlowAddJob.enqueue(40, 2, 1.0, conn=conn.raw)
    failing = FailOnceJob.enqueue("from afar", conn=conn.raw)
    never = AddJob.enqueue(0, 0, conn=conn.raw, queue="nobody")
    waiters = [_waiter(dsn, mode, ok.id or 0, 20), _waiter(dsn, mode, failing.id or 0, 20),
               _waiter(dsn, mode, never.id or 0, 1)]
    time.sleep(0.5)  # the waiters are waiting before the jobs run
    que_worker(worker_count=2)
    out = [json.loads(w.communicate(timeout=60)[0]) for w in waiters]
    assert out[0] == {"result": 42}
    assert out[1] == {"failed": "RuntimeError: from afar", "state": "expired"}
    assert "did not finish within 1.0" in out[2]["timeout"]


def test_inline_mode_result() -> None:
    with que_core.run_mode("inline"):
        job = AddJob.enqueue(2, 3)
    assert job.result(timeout=0) == 5


def test_results_ride_the_batch_of_outcomes(conn: Connection, adapter: Adapter,
                                            dsn: str) -> None:
    """Kept results are written by the statement that writes every outcome
    (que_core_next_jobs), several jobs a call: no statement per job."""
    from que_core import Worker, bulk_enqueue
    from tests.test_worker import _Counting

    with bulk_enqueue(conn=conn.raw) as jobs:
        for i in range(100):
            AddJob.enqueue(i, 1, conn=conn.raw)
    counting = _Counting(adapter)
    w = Worker(dsn, adapter=counting, poll_interval=0.2)  # type: ignore[arg-type]
    w.start()
    try:
        wait_until(lambda: scalar(conn, "SELECT count(*) FROM que_jobs WHERE finished_at IS NULL")
                 == 0)
    finally:
        w.stop(timeout=10)
    stored = dict(conn.execute("SELECT id, que_core_result::text FROM que_jobs"))
    assert [stored[j.id] for j in jobs] == [str(i + 1) for i in range(100)]
    claims = [p for name, p in counting.ran if name == "next_jobs" and p[1]]
    written = [o["id"] for p in claims for o in json.loads(p[1])]
    assert sorted(written) == sorted(j.id for j in jobs)
    assert len(claims) < len(written)  # several outcomes per call
    others = [n for n, _ in counting.ran if n not in ("?", "next_jobs")]
    assert len(others) < 20, sorted(others)


def test_a_job_that_resolves_itself_keeps_its_result(conn: Connection,
                                                     que_worker: Any) -> None:
    from conformance.jobs import FinishesItselfJob

    que_worker(worker_count=1)
    job = FinishesItselfJob.enqueue([1, "a"], conn=conn.raw)
    # The wait starts once the row shows finished, before the result is written.
    wait_until(lambda: scalar(conn, "SELECT finished_at IS NOT NULL FROM que_jobs"))
    assert scalar(conn, "SELECT que_core_result FROM que_jobs") is None
    assert job.result(timeout=10) == {"value": [1, "a"]}


def test_result_needs_a_connection() -> None:
    job = AddJob.build((1, 2))
    job.id = 1
    with pytest.raises(ConfigurationError, match="result needs a connection"):
        job.result(timeout=1)


def test_an_async_job_keeps_its_result(conn: Connection, que_worker: Any, ajobs: Any) -> None:
    que_worker(worker_count=1)
    job = ajobs.AsyncAddJob.enqueue(2, 5, conn=conn.raw)
    assert job.result(timeout=10) == 7
