"""The worker process's engine: a locker, a listener and worker threads.

Run it from the command line (``que work``) or inside any process::

    w = Worker(dsn="postgresql://...", queues=["default"])
    w.start()
    ...
    w.stop()
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence
from typing import Any

from que_core.connection import Adapter, Connection
from que_core.dsn import check_dsn, mask_password
from que_core.errors import ConfigurationError, QueError, SchemaError
from que_core.job_buffer import ANY_PRIORITY, JobBuffer
from que_core.job_runner import JobRunner, _call_hook
from que_core.listener import Listener
from que_core.locker import Locker
from que_core.plugins import get_adapter
from que_core.pooler import check_sessions_last

log = logging.getLogger("que_core.worker")

DEFAULT_PRIORITIES: tuple[int | None, ...] = (10, 30, 50, None, None, None)


def parse_priorities(text: str) -> list[int | None]:
    """``"10,30,50,any,any"`` -> ``[10, 30, 50, None, None]``."""
    out: list[int | None] = []
    for part in text.split(","):
        part = part.strip()
        if part.lower() == "any":
            out.append(None)
            continue
        try:
            value = int(part)
        except ValueError:
            raise ConfigurationError(
                f"worker priority {part!r} is neither an integer nor 'any'"
            ) from None
        if not -32768 <= value <= ANY_PRIORITY:
            raise ConfigurationError(f"worker priority {value} is outside the smallint range")
        out.append(value)
    return out


class Worker:
    """Works jobs from the given queues with a pool of threads.

    :param dsn: where the jobs are (``$DATABASE_URL`` if omitted).
    :param adapter: the adapter name (``psycopg``, ``psycopg2``, ``pg8000``, ...).
    :param queues: queue names to work, polled in this order.
    :param worker_count: number of worker threads (when *worker_priorities*
        is not given: the first three take only priorities <= 10, 30 and 50,
        as in Que, the rest take any).
    :param worker_priorities: one priority threshold per thread (None: any).
    :param poll_interval: seconds between polls for scheduled jobs, retries
        and bulk inserts (new jobs arrive through LISTEN/NOTIFY).
    :param buffer_size: locked jobs kept waiting for a free thread.
    :param listen: use LISTEN/NOTIFY (otherwise polling only).
    :param notify_poll_interval: for adapters that cannot block waiting for
        notifications, how often to check for them.
    """

    def __init__(
        self,
        dsn: str | None = None,
        *,
        adapter: str | Adapter | None = None,
        queues: Sequence[str] = ("default",),
        worker_count: int | None = None,
        worker_priorities: Sequence[int | None] | None = None,
        poll_interval: float = 5.0,
        buffer_size: int = 8,
        listen: bool = True,
        notify_poll_interval: float = 0.02,
    ) -> None:
        source = "" if dsn else "env DATABASE_URL"
        dsn = dsn or os.environ.get("DATABASE_URL")
        if not dsn:
            raise ConfigurationError("no database: pass dsn=... or set DATABASE_URL")
        self.dsn = check_dsn(dsn, source)
        self.adapter = (
            get_adapter(adapter) if adapter is None or isinstance(adapter, str) else adapter
        )
        if not queues:
            raise ConfigurationError("a worker needs at least one queue")
        self.queues = [str(q) for q in queues]
        if worker_priorities is None:
            count = 6 if worker_count is None else worker_count
            priorities = [
                DEFAULT_PRIORITIES[i] if i < len(DEFAULT_PRIORITIES) else None
                for i in range(count)
            ]
            if count and all(p is not None for p in priorities):
                priorities[-1] = None  # someone must take any job
        else:
            priorities = list(worker_priorities)
        if not priorities:
            raise ConfigurationError("a worker needs at least one worker thread")
        if poll_interval <= 0:
            raise ConfigurationError(f"poll interval {poll_interval!r} must be positive")
        self.worker_priorities = priorities
        self.poll_interval = poll_interval
        self.buffer = JobBuffer(max(1, buffer_size))
        self.listen = listen
        self.notify_poll_interval = notify_poll_interval
        self._stop_event = threading.Event()
        self.locker: Locker | None = None
        self.listener: Listener | None = None
        self.runners: list[JobRunner] = []
        self._started = False

    def __repr__(self) -> str:
        return (
            f"<Worker {mask_password(self.dsn)} adapter={self.adapter.name} "
            f"queues={self.queues} priorities={self.worker_priorities}>"
        )

    def _connect(self) -> Connection:
        return self.adapter.connect(self.dsn)

    def start(self) -> Worker:
        """Connect, register and start working. Raises at once when the
        database cannot be reached or has no que-core schema."""
        if self._started:
            raise QueError("this worker was already started")
        from que_core.migrations import LATEST_VERSION, current_version

        self._started = True
        locker = Locker(
            self._connect,
            self.buffer,
            self.queues,
            self.worker_priorities,
            self.poll_interval,
            self._stop_event,
        )
        conn = self._connect()
        try:
            version = current_version(conn)
            check_sessions_last(conn, self._connect, mask_password(self.dsn))
        finally:
            conn.close()
        if version == 0:
            raise SchemaError("the database has no que schema: run `que migrate` first")
        if version != LATEST_VERSION:
            raise SchemaError(
                f"the que schema is at version {version}; this que-core works with "
                f"version {LATEST_VERSION}: run `que migrate`"
                if version < LATEST_VERSION
                else f"the que schema is at version {version}, newer than this "
                f"que-core knows ({LATEST_VERSION}): upgrade que-core"
            )
        locker.open()
        self.locker = locker
        if self.listen:
            self.listener = Listener(
                self._connect,
                locker,
                self.adapter.blocking_notifications,
                self.notify_poll_interval,
                self._stop_event,
            )
        self.runners = [
            JobRunner(i, p, self._connect, self.buffer, locker, self._stop_event)
            for i, p in enumerate(self.worker_priorities)
        ]
        locker.running_sessions = lambda: [
            r.backend_pid for r in self.runners if r.current is not None and r.backend_pid
        ]
        locker.start()
        if self.listener is not None:
            self.listener.start()
        for runner in self.runners:
            runner.start()
        log.info("worker started: %r", self)
        _call_hook("que_worker_started", worker=self)
        return self

    @property
    def running(self) -> bool:
        return self.locker is not None and self.locker.is_alive()

    def busy_count(self) -> int:
        """How many worker threads are running a job now."""
        return sum(1 for r in self.runners if r.current is not None)

    def stop(self, timeout: float | None = None) -> bool:
        """Stop taking jobs, let running ones finish, release the rest.

        With *timeout*, wait at most that many seconds for running jobs;
        then their sessions are terminated (nothing a hung job does later
        can commit) and the locker session closes, which frees their locks
        (a hung job's thread is left behind, and its job may run again
        elsewhere). Returns True when every running job finished in time.
        """
        if self.locker is None:
            return True
        deadline = None if timeout is None else time.monotonic() + timeout
        self.locker.request_stop(deadline)  # it releases the buffered jobs
        clean = True
        for runner in self.runners:
            runner.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
            if runner.is_alive():
                clean = False
        if not clean:
            log.warning(
                "shutdown deadline passed with %s job(s) still running: ending their "
                "sessions and releasing their locks",
                sum(1 for r in self.runners if r.is_alive()),
            )
        self._stop_event.set()  # from here on, no more reconnect attempts
        self.locker.join()
        if self.listener is not None:
            self.listener.join()
        log.info("worker stopped")
        _call_hook("que_worker_stopped", worker=self)
        return clean

    def __enter__(self) -> Worker:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
