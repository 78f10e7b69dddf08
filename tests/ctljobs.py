"""Job classes of the job-control tests (timeouts, cancel); worker
subprocesses import this module."""

from __future__ import annotations

import time
from typing import Any

from conformance.jobs import record
from que_core import Job


class LoopJob(Job):
    """Spins in Python until stopped."""

    max_run_time = 1
    retry_interval = 3600

    def run(self, tag: Any = "loop") -> None:
        record(self, tag, "start")
        while True:
            pass


class SleepLong(Job):
    """Sleeps in time.sleep (C: no asynchronous exception reaches it)."""

    max_run_time = 1
    retry_interval = 3600

    def run(self, tag: Any = "sleep", seconds: float = 30) -> None:
        record(self, tag, "start")
        time.sleep(seconds)
        record(self, tag, "woke")


class SqlSleep(Job):
    """Blocks in a statement, inside a transaction that holds a row lock."""

    max_run_time = 1
    retry_interval = 3600

    def run(self, tag: Any = "sql") -> None:
        record(self, tag, "start")
        assert self.db is not None
        with self.transaction():
            self.db.execute("UPDATE que_jobs SET args = args WHERE id = %s", (self.id,))
            self.db.execute("SELECT pg_sleep(30)")


class Spin(Job):
    """Spins in Python for *seconds* (no limit of its own), then destroys
    itself with its effect in one transaction."""

    retry_interval = 3600

    def run(self, tag: Any, seconds: float = 60.0) -> None:
        record(self, tag, "start")
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            pass
        with self.transaction():
            record(self, tag, "ran")
            self.destroy()


class Polite(Job):
    """Checks self.cancelled at a safe point and returns by itself."""

    def run(self, tag: Any) -> None:
        record(self, tag, "start")
        until = time.monotonic() + 60
        while time.monotonic() < until and not self.cancelled:
            time.sleep(0.01)
        record(self, tag, "saw cancel" if self.cancelled else "not cancelled")


class Quick(Job):
    def run(self, tag: Any) -> None:
        record(self, tag, "ran")
