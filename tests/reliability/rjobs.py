"""Job classes of the reliability suite (worker subprocesses import this).

Every job records its run in the bookkeeping tables of
:mod:`tests.reliability.harness` through its own session.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
import uuid
from typing import Any

from que_core import Job

#: Where the side session of :func:`end_raised` connects: set by the tests
#: for in-process workers, from $QUE_REL_DSN / $QUE_REL_ADAPTER in worker
#: subprocesses.
SIDECAR: dict[str, str] = {}
_local = threading.local()


def _sidecar() -> Any:
    conn = getattr(_local, "conn", None)
    if conn is None or conn.closed:
        from que_core.plugins import get_adapter

        dsn = SIDECAR.get("dsn") or os.environ["QUE_REL_DSN"]
        adapter = get_adapter(SIDECAR.get("adapter") or os.environ["QUE_REL_ADAPTER"])
        conn = _local.conn = adapter.connect(dsn)
    return conn


def end_raised(job: Job, run: str) -> None:
    """The end of a run that raised, written on a session of its own (the
    job's may be dead or broken), before the worker records the error and
    lets the job go."""
    for _ in range(3):
        try:
            _sidecar().execute(
                "INSERT INTO rel_ends (run, job_id, outcome) VALUES (%s, %s, 'raised')",
                (run, job.id))
            return
        except Exception:
            conn = getattr(_local, "conn", None)
            if conn is not None:
                conn.close()
            _local.conn = None


def start_run(job: Job) -> str:
    assert job.db is not None
    run = uuid.uuid4().hex
    job.db.execute(
        "INSERT INTO rel_runs (run, job_id, os_pid, thread, backend_pid) "
        "VALUES (%s, %s, %s, %s, pg_backend_pid())",
        (run, job.id, os.getpid(), threading.current_thread().name),
    )
    return run


def end_run(job: Job, run: str, outcome: str) -> None:
    assert job.db is not None
    job.db.execute(
        "INSERT INTO rel_ends (run, job_id, outcome) VALUES (%s, %s, %s)", (run, job.id, outcome)
    )


def effect_and_destroy(job: Job, run: str) -> None:
    """The effect, the end of the run and the job's destroy in one transaction."""
    assert job.db is not None
    with job.transaction():
        job.db.execute("INSERT INTO rel_effects (job_id, run) VALUES (%s, %s)", (job.id, run))
        end_run(job, run, "done")
        job.destroy()


class Effect(Job):
    """Sleeps *seconds*, then writes its effect and destroys itself in one
    transaction. With *fail_first* its first run raises (recorded, retried)."""

    job_name = "rel.Effect"
    retry_interval = 0.2
    maximum_retry_count = 50

    def run(self, seconds: float = 0.0, fail_first: bool = False) -> None:
        run = start_run(self)
        try:
            if seconds:
                time.sleep(seconds)
            if fail_first and self.error_count == 0:
                end_run(self, run, "error")
                raise RuntimeError("planned failure on the first run")
            effect_and_destroy(self, run)
        except BaseException:
            end_raised(self, run)
            raise


async def astart_run(job: Job) -> str:
    run = uuid.uuid4().hex
    await job.db.execute(
        "INSERT INTO rel_runs (run, job_id, os_pid, thread, backend_pid) "
        "VALUES (%s, %s, %s, %s, pg_backend_pid())",
        (run, job.id, os.getpid(), threading.current_thread().name),
    )
    return run


async def aend_run(job: Job, run: str, outcome: str) -> None:
    await job.db.execute(
        "INSERT INTO rel_ends (run, job_id, outcome) VALUES (%s, %s, %s)", (run, job.id, outcome)
    )


class AEffect(Job):
    """:class:`Effect` as an ``async def`` job, worked on the worker's event
    loop: awaits *seconds*, then writes its effect and adestroys itself in
    one transaction on its async session."""

    job_name = "rel.AEffect"
    retry_interval = 0.2
    maximum_retry_count = 50

    async def run(self, seconds: float = 0.0, fail_first: bool = False) -> None:
        run = await astart_run(self)
        try:
            if seconds:
                await asyncio.sleep(seconds)
            if fail_first and self.error_count == 0:
                await aend_run(self, run, "error")
                raise RuntimeError("planned failure on the first run")
            async with self.atransaction():
                await self.db.execute("INSERT INTO rel_effects (job_id, run) VALUES (%s, %s)",
                                      (self.id, run))
                await aend_run(self, run, "done")
                await self.adestroy()
        except BaseException:
            end_raised(self, run)  # blocking, on a sync session of its own: quick
            raise


class Hang(Job):
    """Hangs for *seconds* on its first run, then does its effect (which must
    not commit if the worker gave up on it); quick on later runs."""

    job_name = "rel.Hang"
    retry_interval = 0.2

    def run(self, seconds: float) -> None:
        assert self.db is not None
        run = start_run(self)
        ((earlier,),) = self.db.execute(
            "SELECT count(*) FROM rel_runs WHERE job_id = %s AND run <> %s", (self.id, run)
        )
        try:
            if earlier == 0:
                time.sleep(seconds)
            effect_and_destroy(self, run)
        except BaseException:
            end_raised(self, run)
            raise


#: What Echo jobs were given, by job id (in-process workers only).
ECHOED: dict[int, dict[str, Any]] = {}


class Echo(Job):
    """Keeps what it was given in :data:`ECHOED` and destroys itself."""

    job_name = "rel.Echo"
    maximum_retry_count = 0

    def run(self, *args: Any, **kwargs: Any) -> None:
        assert self.id is not None
        ECHOED[self.id] = {
            "args": list(args),
            "kwargs": kwargs,
            "job_class": self.job_class,
            "queue": self.queue,
            "tags": list(self.tags),
        }
        self.destroy()


class Overrun(Job):
    """Runs past its max_run_time on its first run (a Python loop, or a
    statement when *sql*), then does its effect quickly on the retry: the
    timed-out run must commit nothing, and nothing run twice at once."""

    job_name = "rel.Overrun"
    retry_interval = 0.2
    max_run_time = 0.5

    def run(self, seconds: float, sql: bool = False) -> None:
        assert self.db is not None
        run = start_run(self)
        try:
            if self.error_count == 0:
                with self.transaction():
                    self.db.execute("INSERT INTO rel_effects (job_id, run) VALUES (%s, %s)",
                                    (self.id, run))  # rolled back when it is stopped
                    if sql:
                        self.db.execute("SELECT pg_sleep(%s)", (seconds,))
                    else:
                        until = time.monotonic() + seconds
                        while time.monotonic() < until:
                            pass
            effect_and_destroy(self, run)
        except BaseException:
            end_raised(self, run)
            raise
