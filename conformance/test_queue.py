"""Queue-level conformance: the job queue itself, run through the adapter under test.

Jobs are enqueued through a raw connection of the adapter's driver and worked
by :class:`~que_core.Worker` and ``que work`` processes that use the adapter.
The job classes are in :mod:`conformance.jobs`, which ``que work`` imports.
"""

from __future__ import annotations

import os
import signal
import site
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

import conformance
from conformance import jobs
from conformance.fixtures import scalar, wait_until
from que_core import Worker, bulk_enqueue, migrate
from que_core.connection import Adapter, Connection
from que_core.dsn import mask_password
from que_core.testing.pytest_plugin import QueDatabase

#: An idle worker (polling once a minute) runs a new job within this many
#: seconds of its enqueue: LISTEN/NOTIFY woke it.
WAKE_BOUND = 3.0
#: A new worker runs a job that a killed one left behind within this many seconds.
PICKUP_BOUND = 3.0
#: How long a ``que work`` process may take to start and register.
STARTUP_BOUND = 20.0


@pytest.fixture
def queue_db(connect: Callable[[], Connection]) -> Connection:
    """A session on the test's database, migrated to the latest que schema and
    with the jobs' log table."""
    conn = connect()
    migrate(conn)
    conn.execute(jobs.LOG_TABLE)
    return conn


@pytest.fixture
def que_database(adapter: Adapter, db_dsn: str, queue_db: Connection) -> QueDatabase:
    """The test's database as que-core's pytest plugin's fixture, so that its
    ``que_worker`` (the one worker fixture) starts workers on it."""
    return QueDatabase(db_dsn, adapter, queue_db)


@pytest.fixture
def start_worker(que_worker: Callable[..., Worker]) -> Callable[..., Worker]:
    """Start in-process workers that use the adapter (``que_worker``, polling
    more often); stopped after the test."""

    def start(**kwargs: Any) -> Worker:
        kwargs.setdefault("poll_interval", 0.1)
        return que_worker(**kwargs)

    return start


@dataclass
class _Process:
    cmd: list[str]
    proc: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def spawn_worker(
    adapter: Adapter, db_dsn: str, queue_db: Connection, tmp_path: Path
) -> Iterator[Callable[..., _Process]]:
    """Start ``que work --adapter <adapter> conformance.jobs`` processes; killed
    after the test (their output is printed then, shown if the test failed)."""
    spawned: list[_Process] = []

    def spawn(*extra: str) -> _Process:
        log = tmp_path / f"que-work-{len(spawned)}.log"
        cmd = [
            sys.executable, "-m", "que_core.cli", "work", "--dsn", db_dsn,
            "--adapter", adapter.name, "--poll-interval", "0.1", *extra, "conformance.jobs",
        ]  # fmt: skip
        with log.open("wb") as out:
            proc = subprocess.Popen(
                cmd, cwd=tmp_path, env=_worker_env(), stdout=out, stderr=subprocess.STDOUT
            )
        spawned.append(_Process(cmd, proc, log))
        return spawned[-1]

    yield spawn
    for p in spawned:
        if p.proc.poll() is None:
            p.proc.kill()
        p.proc.wait(10)
        print(f"--- {mask_password(' '.join(p.cmd))}\n{p.output()}")


def _worker_env() -> dict[str, str]:
    """The environment of a ``que work`` process: ours without que settings
    (the flags say everything), and able to import :mod:`conformance.jobs`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUE_")}
    env.pop("DATABASE_URL", None)
    root = str(Path(conformance.__file__).resolve().parent.parent)
    site_dirs = {
        str(Path(d).resolve()) for d in [*site.getsitepackages(), site.getusersitepackages()]
    }
    if root not in site_dirs:  # a checkout rather than an installed que-core
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    return env


def _job_count(conn: Connection) -> int:
    return int(scalar(conn, "SELECT count(*) FROM que_jobs"))


def _job(conn: Connection, job_id: int | None, columns: str) -> tuple[Any, ...] | None:
    """The *columns* of job *job_id*, None when there is no such job."""
    rows = conn.execute(f"SELECT {columns} FROM que_jobs WHERE id = %s::bigint", [job_id])
    return rows[0] if rows else None


def _existing_job(conn: Connection, job_id: int | None, columns: str) -> tuple[Any, ...]:
    row = _job(conn, job_id, columns)
    assert row is not None, f"job {job_id} is gone"
    return row


def _logged(conn: Connection, event: str = "ran") -> list[str]:
    rows = conn.execute("SELECT tag FROM conformance_log WHERE event = %s ORDER BY seq", [event])
    return [row[0] for row in rows]


def _lockers(conn: Connection) -> int:
    return int(scalar(conn, "SELECT count(*) FROM que_lockers"))


def _advisory_locks(conn: Connection, where: str = "true", *params: Any) -> int:
    """Advisory locks taken or waited for in the test's database."""
    return int(scalar(conn, _ADVISORY_LOCKS.format(what="count(*)", where=where), *params))


def _locked_jobs(conn: Connection) -> int:
    """How many jobs are locked, by one session or several (a bigint key shows
    as objsubid 1, two int keys as objsubid 2)."""
    what = "count(DISTINCT (classid, objid))"
    return int(scalar(conn, _ADVISORY_LOCKS.format(what=what, where="objsubid = 1 AND granted")))


_ADVISORY_LOCKS = (
    "SELECT {what} FROM pg_locks WHERE locktype = 'advisory' AND database = "
    "(SELECT oid FROM pg_database WHERE datname = current_database()) AND {where}"
)


@contextmanager
def _gate(connect: Callable[[], Connection], gate: int) -> Iterator[Callable[[], int]]:
    """Hold the gate *gate* that :func:`conformance.jobs.wait_at_gate` waits at
    during the block; yields a function counting the jobs waiting there."""
    conn = connect()
    key = [jobs.GATE_KEY, gate]
    conn.execute("SELECT pg_advisory_lock(%s::int, %s::int)", key)
    try:
        yield lambda: _advisory_locks(
            conn,
            "objsubid = 2 AND NOT granted AND classid::bigint = %s::bigint "
            "AND objid::bigint = %s::bigint",
            *key,
        )
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s::int, %s::int)", key)


# -- enqueueing --------------------------------------------------------------------


def test_enqueue_joins_the_callers_transaction_and_commits_with_it(
    connect: Callable[[], Connection], queue_db: Connection
) -> None:
    caller = connect()
    caller.execute("BEGIN")
    run_at = datetime.now(timezone.utc) + timedelta(hours=1)
    job = jobs.Noted.enqueue(
        "kept", {"n": [1, None]}, conn=caller.raw, queue="conformance", priority=7,
        run_at=run_at, tags=["t1"], extra="ż'%s",
    )  # fmt: skip
    assert isinstance(job.id, int) and job.run_at == run_at
    assert _job_count(queue_db) == 0  # not before the caller commits
    caller.execute("COMMIT")
    assert _job(
        queue_db, job.id, "job_class, queue, priority, run_at, args::text, kwargs::text, data::text"
    ) == (
        "conformance.jobs.Noted", "conformance", 7, run_at,
        '["kept", {"n": [1, null]}]', '{"extra": "ż\'%s"}', '{"tags": ["t1"]}',
    )  # fmt: skip


def test_enqueue_is_discarded_when_the_caller_rolls_back(
    connect: Callable[[], Connection], queue_db: Connection
) -> None:
    caller = connect()
    caller.execute("BEGIN")
    job = jobs.Noted.enqueue("discarded", conn=caller.raw)
    assert job.id is not None
    caller.execute("ROLLBACK")
    assert _job_count(queue_db) == 0


def test_bulk_enqueue_inserts_every_job_in_the_callers_transaction(
    connect: Callable[[], Connection], queue_db: Connection
) -> None:
    caller = connect()
    caller.execute("BEGIN")
    with bulk_enqueue(conn=caller.raw) as pending:
        for i in range(3):
            jobs.Noted.enqueue(f"b{i}", priority=10 + i)
        assert all(job.id is None for job in pending)  # inserted when the block ends
    many = jobs.Noted.enqueue_many([[f"m{i}"] for i in range(200)], conn=caller.raw)
    enqueued = [*pending, *many]
    assert _job_count(queue_db) == 0
    caller.execute("COMMIT")
    ids = [job.id for job in enqueued]
    assert all(isinstance(i, int) for i in ids) and len(set(ids)) == len(ids)
    rows = queue_db.execute("SELECT id, args::text, priority FROM que_jobs ORDER BY id")
    assert rows == [(job.id, f'["{job.args[0]}"]', job.priority) for job in enqueued]


# -- working -----------------------------------------------------------------------


def test_worker_works_jobs_and_destroys_them(
    queue_db: Connection, start_worker: Callable[..., Worker]
) -> None:
    enqueued = [jobs.Noted.enqueue(i, conn=queue_db.raw) for i in range(20)]
    start_worker()
    wait_until(lambda: _job_count(queue_db) == 0)
    rows = queue_db.execute("SELECT job_id, tag, pid FROM conformance_log ORDER BY job_id")
    assert rows == [(job.id, str(i), os.getpid()) for i, job in enumerate(enqueued)]


def test_jobs_run_in_priority_order(
    queue_db: Connection, start_worker: Callable[..., Worker]
) -> None:
    for priority in (50, 5, 30, 1, 20):
        jobs.Noted.enqueue(f"p{priority}", conn=queue_db.raw, priority=priority)
    start_worker(worker_priorities=[None])  # one thread: one job at a time
    wait_until(lambda: _job_count(queue_db) == 0)
    assert _logged(queue_db) == ["p1", "p5", "p20", "p30", "p50"]


def test_failed_job_records_its_error_and_is_retried_later(
    queue_db: Connection, start_worker: Callable[..., Worker]
) -> None:
    job = jobs.Failing.enqueue("f", conn=queue_db.raw)
    start_worker()
    wait_until(lambda: _job(queue_db, job.id, "error_count") == (1,))
    count, message, backtrace, delay, expired = _existing_job(
        queue_db,
        job.id,
        "error_count, last_error_message, last_error_backtrace, "
        "extract(epoch FROM run_at - now())::float8, expired_at IS NOT NULL",
    )
    assert (count, message, expired) == (1, "ValueError: boom f", False)
    assert "raise ValueError" in backtrace and "ValueError: boom f" in backtrace
    assert 3500 < delay <= 3600  # retry_interval = 3600
    assert _logged(queue_db) == ["f"]


def test_job_expires_after_its_maximum_retry_count(
    queue_db: Connection, start_worker: Callable[..., Worker]
) -> None:
    job = jobs.FailingTwice.enqueue("x", conn=queue_db.raw)
    start_worker()
    wait_until(lambda: _job(queue_db, job.id, "expired_at IS NOT NULL") == (True,))
    assert _job(queue_db, job.id, "error_count, last_error_message") == (3, "ValueError: boom x")
    assert _logged(queue_db) == ["x", "x", "x"]  # the first run and two retries


def test_job_effect_and_destroy_commit_together(
    connect: Callable[[], Connection], queue_db: Connection, start_worker: Callable[..., Worker]
) -> None:
    job = jobs.SelfResolving.enqueue("ok", gate=1, conn=queue_db.raw)
    with _gate(connect, 1) as waiting:
        start_worker()
        # The job wrote its effect and destroyed itself, and waits at the gate
        # before its commit: neither is visible yet.
        wait_until(lambda: waiting() == 1)
        assert _logged(queue_db) == []
        assert _job(queue_db, job.id, "id") == (job.id,)
    wait_until(lambda: _job_count(queue_db) == 0)
    assert _logged(queue_db) == ["ok"]


def test_job_failing_after_its_destroy_rolls_back_effect_and_destroy(
    queue_db: Connection, start_worker: Callable[..., Worker]
) -> None:
    job = jobs.SelfResolving.enqueue("bad", fail=True, conn=queue_db.raw)
    start_worker()
    wait_until(lambda: _job(queue_db, job.id, "error_count") == (1,))
    assert _job(queue_db, job.id, "last_error_message") == (
        "RuntimeError: failed after destroy: bad",
    )
    assert _logged(queue_db) == []


def test_notify_wakes_an_idle_worker(
    queue_db: Connection, start_worker: Callable[..., Worker]
) -> None:
    start_worker(poll_interval=60)  # only a NOTIFY brings a new job this fast
    wait_until(lambda: scalar(queue_db, "SELECT bool_and(listening) FROM que_lockers"))
    # A first job, in case the poll that follows LISTEN is still to come.
    jobs.Noted.enqueue("first", conn=queue_db.raw)
    wait_until(lambda: _logged(queue_db) == ["first"], within=WAKE_BOUND)
    began = time.monotonic()
    jobs.Noted.enqueue("woken", conn=queue_db.raw)
    wait_until(lambda: _logged(queue_db) == ["first", "woken"], within=WAKE_BOUND)
    assert time.monotonic() - began < WAKE_BOUND


# -- worker processes --------------------------------------------------------------


def test_killed_worker_releases_its_job_to_the_next_worker_at_once(
    queue_db: Connection,
    spawn_worker: Callable[..., _Process],
    start_worker: Callable[..., Worker],
) -> None:
    first = spawn_worker()
    wait_until(lambda: _lockers(queue_db) == 1, within=STARTUP_BOUND)
    job = jobs.HangsFirst.enqueue("crash", conn=queue_db.raw)
    enqueued = _job(queue_db, job.id, "row_to_json(que_jobs)::text")
    wait_until(lambda: _logged(queue_db, "start") == ["crash"])
    first.proc.send_signal(signal.SIGKILL)
    assert first.proc.wait(10) == -signal.SIGKILL
    wait_until(lambda: _advisory_locks(queue_db) == 0)  # its sessions died with their locks
    assert _job(queue_db, job.id, "row_to_json(que_jobs)::text") == enqueued  # untouched
    began = time.monotonic()
    start_worker(poll_interval=60)  # it finds the job in the poll it starts with
    wait_until(lambda: _logged(queue_db, "done") == ["crash"], within=PICKUP_BOUND)
    assert time.monotonic() - began < PICKUP_BOUND
    assert _job_count(queue_db) == 0
    pids = queue_db.execute("SELECT pid FROM conformance_log WHERE event = 'start' ORDER BY seq")
    assert pids == [(first.proc.pid,), (os.getpid(),)]
    # The new worker removed the dead one's que_lockers row.
    assert queue_db.execute("SELECT ruby_pid FROM que_lockers") == [(os.getpid(),)]


def test_sigterm_lets_the_running_job_finish_and_releases_everything(
    connect: Callable[[], Connection], queue_db: Connection, spawn_worker: Callable[..., _Process]
) -> None:
    jobs.Gated.enqueue("running", 2, conn=queue_db.raw, priority=1)
    for i in range(2):
        jobs.Noted.enqueue(f"waiting{i}", conn=queue_db.raw, priority=200)
    with _gate(connect, 2) as waiting:
        worker = spawn_worker("--workers", "1")  # one thread: the others wait
        wait_until(lambda: waiting() == 1, within=STARTUP_BOUND)
        assert _lockers(queue_db) == 1
        assert _locked_jobs(queue_db) >= 1
        worker.proc.send_signal(signal.SIGTERM)
        # Stopping: jobs claimed but not started are released; the running one is still held.
        wait_until(lambda: _locked_jobs(queue_db) == 1)
        assert worker.proc.poll() is None
        assert _logged(queue_db, "done") == []
    assert worker.proc.wait(15) == 0
    assert _logged(queue_db, "done") == ["running"]
    assert _logged(queue_db) == []  # the waiting jobs were released, not run
    assert _job_count(queue_db) == 2
    assert _lockers(queue_db) == 0
    assert _advisory_locks(queue_db) == 0
