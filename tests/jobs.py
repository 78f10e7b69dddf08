"""Job classes the tests enqueue; worker subprocesses import this module."""

from __future__ import annotations

import os
import time
from typing import Any

from que_core import Job

LOG_TABLE = """
CREATE TABLE IF NOT EXISTS test_log (
  seq bigserial PRIMARY KEY,
  job_id bigint,
  tag text,
  event text,
  pid int,
  at timestamptz NOT NULL DEFAULT clock_timestamp()
)
"""


def record(job: Job, tag: Any, event: str) -> None:
    assert job.db is not None
    job.db.execute(
        "INSERT INTO test_log (job_id, tag, event, pid) VALUES (%s, %s, %s, %s)",
        (job.id, str(tag), event, os.getpid()),
    )


class RecordJob(Job):
    """Writes its effect and destroys itself in one transaction."""

    def run(self, tag: Any) -> None:
        with self.transaction():
            record(self, tag, "ran")
            self.destroy()


class PlainJob(Job):
    """Writes its effect and returns without resolving itself."""

    def run(self, tag: Any, **kwargs: Any) -> None:
        record(self, tag, "ran")


class FailingJob(Job):
    retry_interval = 0
    maximum_retry_count = 2

    def run(self, tag: Any) -> None:
        record(self, tag, "ran")
        raise ValueError(f"boom {tag}")


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


class HangFirstJob(Job):
    """Hangs on its first run (to be killed mid-job); quick on any later run."""

    def run(self, tag: Any) -> None:
        assert self.db is not None
        ((starts,),) = self.db.execute(
            "SELECT count(*) FROM test_log WHERE job_id = %s AND event = 'start'", (self.id,)
        )
        record(self, tag, "start")
        if starts == 0:
            time.sleep(120)
        with self.transaction():
            record(self, tag, "done")
            self.destroy()


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
