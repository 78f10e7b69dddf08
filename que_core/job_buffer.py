"""The sorted buffer of locked jobs that feeds the worker threads."""

from __future__ import annotations

import bisect
import enum
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

ANY_PRIORITY = 32767


class Done(enum.Enum):
    """What the locker does with a job a worker thread is done with."""

    #: Its outcome is written (or it must run again): unlock it.
    UNLOCK = "unlock"
    #: It returned without resolving itself: delete it (in a batch), then unlock it.
    DELETE = "delete"
    #: Its outcome cannot be written: unlock it, and do not lock it again for a while
    #: (it would fail the same way at every poll).
    SET_ASIDE = "set_aside"


@dataclass(order=True)
class LockedJob:
    """A job row this process holds the advisory lock of."""

    priority: int
    run_at: datetime
    id: int
    job_class: str = field(compare=False)
    queue: str = field(compare=False)
    error_count: int = field(compare=False)
    args: list[Any] = field(compare=False)
    kwargs: dict[str, Any] = field(compare=False)
    data: dict[str, Any] = field(compare=False)
    #: The token of the locker session that locked it (see queries.sql).
    token: int = field(default=0, compare=False)
    #: Why the row cannot be run as it is (undecodable arguments, ...).
    problem: str | None = field(default=None, compare=False)


class JobBuffer:
    """Locked jobs waiting for a worker thread, most important first."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._jobs: list[LockedJob] = []
        self._cond = threading.Condition()
        self._stopped = False

    def __len__(self) -> int:
        return len(self._jobs)

    def space(self) -> int:
        with self._cond:
            return self.capacity - len(self._jobs)

    def worst_priority(self) -> int | None:
        with self._cond:
            return self._jobs[-1].priority if self._jobs else None

    def ids(self) -> list[int]:
        with self._cond:
            return [j.id for j in self._jobs]

    def push(self, jobs: list[LockedJob]) -> list[LockedJob]:
        """Add *jobs*; return those pushed out (least important) to unlock."""
        with self._cond:
            if self._stopped:
                return list(jobs)
            for job in jobs:
                bisect.insort(self._jobs, job)
            overflow = self._jobs[self.capacity :]
            del self._jobs[self.capacity :]
            self._cond.notify_all()
            return overflow

    def take(self, max_priority: int | None, timeout: float | None = None) -> LockedJob | None:
        """The most important job of priority <= *max_priority* (None: any),
        waiting for one; None once the buffer is stopped or on timeout."""
        limit = ANY_PRIORITY if max_priority is None else max_priority
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._stopped:
                if self._jobs and self._jobs[0].priority <= limit:
                    return self._jobs.pop(0)
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self._cond.wait(remaining)
            return None

    def clear(self) -> list[LockedJob]:
        """Remove and return every buffered job."""
        with self._cond:
            jobs, self._jobs = self._jobs, []
            return jobs

    def stop(self) -> list[LockedJob]:
        """Wake every waiting worker with None; return the buffered jobs."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
            jobs, self._jobs = self._jobs, []
            return jobs
