"""A periodic job for the worker subprocesses of tests/test_schedules.py.

Only those processes import this module: a class with a schedule in the
test process would be enqueued by every in-process worker of every test.
"""

from __future__ import annotations

from conformance.jobs import record
from que_core import Job


class EverySecond(Job):
    job_name = "tests.EverySecond"
    schedule = "* * * * * *"

    def run(self) -> None:
        record(self, "tick", "ran")
