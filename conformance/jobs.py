"""Job classes of the conformance suite and of que-core's own tests.

They live in a module of their own so that a ``que work ... conformance.jobs``
subprocess can import them, whichever adapter it runs with. Each job writes
what it does to the ``conformance_log`` table through ``self.db``: the
worker's own session, a Connection of the adapter under test.
"""

from __future__ import annotations

import os
import time
from typing import Any

from que_core import Job

LOG_TABLE = """
CREATE TABLE IF NOT EXISTS conformance_log (
  seq bigserial PRIMARY KEY,
  job_id bigint,
  tag text,
  event text,
  pid int,
  at timestamptz NOT NULL DEFAULT clock_timestamp()
)
"""

#: Logs one event of a job (``record``, and ``tests.ajobs``'s async twin).
LOG_INSERT = "INSERT INTO conformance_log (job_id, tag, event, pid) VALUES (%s, %s, %s, %s)"
#: How often a job has logged its start: the jobs that hang on their first run.
STARTS = "SELECT count(*) FROM conformance_log WHERE job_id = %s AND event = 'start'"

#: The first key of the two-key advisory locks that jobs wait for as gates the
#: test opens (two-key locks never meet the bigint locks of jobs).
GATE_KEY = 1_000_001


def record(job: Job, tag: Any, event: str) -> None:
    """Log *event* of *job* on the job's own session (in its transaction, if any)."""
    assert job.db is not None
    job.db.execute(LOG_INSERT, (job.id, str(tag), event, os.getpid()))


def wait_at_gate(job: Job, gate: int) -> None:
    """Wait until the test releases the advisory lock ``(GATE_KEY, gate)``
    (it then belongs to the job's transaction, if any, until its end)."""
    assert job.db is not None
    job.db.execute("SELECT pg_advisory_xact_lock(%s::int, %s::int)", (GATE_KEY, gate))


class PlainJob(Job):
    """Logs its run and returns without resolving itself (the worker then
    destroys or keeps it, as configured)."""

    def run(self, tag: Any, **kwargs: Any) -> None:
        record(self, tag, "ran")


class Noted(PlainJob):
    """A :class:`PlainJob` that the worker destroys, whatever is configured."""

    keep_finished = False


class Failing(Job):
    """Logs its run and raises; retried an hour later."""

    retry_interval = 3600
    maximum_retry_count = 15

    def run(self, tag: Any) -> None:
        record(self, tag, "ran")
        raise ValueError(f"boom {tag}")


class FailingTwice(Failing):
    """Retried at once, at most twice: the third failure expires it."""

    retry_interval = 0
    maximum_retry_count = 2


class SelfResolving(Job):
    """Writes its effect and destroys itself in one transaction.

    With *gate*, it then waits at that gate before committing; with *fail*, it
    raises after the destroy, so the effect and the destroy roll back together.
    """

    def run(self, tag: Any, fail: bool = False, gate: int | None = None) -> None:
        with self.transaction():
            record(self, tag, "ran")
            self.destroy()
            if gate is not None:
                wait_at_gate(self, gate)
            if fail:
                raise RuntimeError(f"failed after destroy: {tag}")


class Gated(Job):
    """Logs its start, waits at *gate*, then logs its end and destroys itself
    in one transaction."""

    def run(self, tag: Any, gate: int) -> None:
        record(self, tag, "start")
        with self.transaction():
            wait_at_gate(self, gate)
            record(self, tag, "done")
            self.destroy()


class HangsFirst(Job):
    """Hangs on its first run (for the test to kill the worker mid-job);
    finishes at once on any later run."""

    def run(self, tag: Any) -> None:
        assert self.db is not None
        ((starts,),) = self.db.execute(STARTS, (self.id,))
        record(self, tag, "start")
        if starts == 0:
            time.sleep(600)
        with self.transaction():
            record(self, tag, "done")
            self.destroy()


class SleepJob(Job):
    """Logs its start, sleeps, logs its end (in the destroying transaction)."""

    def run(self, tag: Any, seconds: float) -> None:
        record(self, tag, "start")
        time.sleep(seconds)
        with self.transaction():
            record(self, tag, "done")
            self.destroy()


class RubyNamedJob(Job):
    job_name = "SendEmail"

    def run(self, *args: Any) -> None:
        record(self, args[0] if args else "", "ran")


class UniqueJob(Job):
    """Unique per user: its key is a function of its argument."""

    @staticmethod
    def unique_key(user: Any, **kwargs: Any) -> str:
        return f"user:{user}"

    def run(self, user: Any, **kwargs: Any) -> None:
        record(self, user, "ran")


class AddJob(Job):
    keep_result = True

    def run(self, a: Any, b: Any) -> Any:
        return a + b


class FailOnceJob(Job):
    """Keeps its result; fails for good at once (no retries)."""

    keep_result = True
    maximum_retry_count = 0

    def run(self, message: str) -> None:
        raise RuntimeError(message)


class ReturnsObjectJob(Job):
    keep_result = True
    maximum_retry_count = 0

    def run(self) -> Any:
        return object()


class SlowAddJob(Job):
    keep_result = True

    def run(self, a: Any, b: Any, seconds: float) -> Any:
        time.sleep(seconds)
        return a + b


class FinishesItselfJob(Job):
    """Keeps its result, and resolves itself in its own transaction."""

    keep_result = True

    def run(self, value: Any) -> Any:
        with self.transaction():
            self.finish()
        time.sleep(0.5)  # finished, its result not yet written
        return {"value": value}
