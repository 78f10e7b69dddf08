"""The worker process's engine: a listener and worker threads.

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
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from que_core import retention
from que_core.async_worker import AsyncWorker
from que_core.claims import SetAside
from que_core.connection import Adapter, AsyncAdapter, Connection
from que_core.dispatch import Dispatcher
from que_core.dsn import check_dsn, mask_password
from que_core.errors import ConfigurationError, QueError
from que_core.execute import call_hook
from que_core.job import is_async, registry
from que_core.listener import Listener, end_sessions
from que_core.options import DEFAULTS
from que_core.plugins import get_adapter, get_async_adapter, installed_adapters
from que_core.pooler import check_sessions_last
from que_core.schedules import Schedule, Scheduler, declared
from que_core.throughput import Throughput
from que_core.validation import check_max_run_time
from que_core.watchdog import Watchdog
from que_core.worker_thread import Durations, WorkerThread

log = logging.getLogger("que_core.worker")

DEFAULT_PRIORITIES: tuple[int | None, ...] = (10, 30, 50, None, None, None)
_D = DEFAULTS  # each worker option's default is defined in que_core.options


def _sides(adapter: str | Adapter | None,
           async_adapter: str | AsyncAdapter | None) -> tuple[Adapter, AsyncAdapter | None]:
    """The sync adapter of the threads, and the async one of the event loop
    if already known. *adapter* may name an async-only adapter (asyncpg):
    it runs the async jobs, and the installed sync one the rest."""
    if isinstance(adapter, str) and async_adapter is None:
        found = installed_adapters().get(adapter)
        if isinstance(found, AsyncAdapter) and not isinstance(found, Adapter):
            return get_adapter(), found
    sync = get_adapter(adapter) if adapter is None or isinstance(adapter, str) else adapter
    if isinstance(async_adapter, str):
        return sync, get_async_adapter(async_adapter)
    if async_adapter is None and isinstance(sync, AsyncAdapter):
        return sync, sync
    return sync, async_adapter


class Worker:
    """Works jobs from the given queues with a pool of threads.

    :param dsn: where the jobs are (``$DATABASE_URL`` if omitted).
    :param adapter: the adapter name (``psycopg``, ``psycopg2``, ``pg8000``, ...).
    :param queues: queue names to work, in this order.
    The defaults are :mod:`que_core.options`'s, as for ``que work``.

    :param worker_count: number of worker threads (default 6; when *worker_priorities*
        is not given: the first three take only priorities <= 10, 30 and 50,
        as in Que, the rest take any).
    :param worker_priorities: one priority threshold per thread (None: any).
    :param poll_interval: seconds between polls for scheduled jobs, retries
        and bulk inserts (new jobs arrive through LISTEN/NOTIFY).
    :param batch_size: the most jobs a thread claims at once (it claims
        fewer when its jobs take long: about 5 ms of work per batch).
    :param listen: use LISTEN/NOTIFY (otherwise polling only).
    :param schedules: periodic jobs to enqueue besides those the registered
        Job classes declare (``schedule = "..."``); see :mod:`que_core.schedules`.
    :param scheduler: enqueue the periodic jobs (a scheduler thread): every
        worker process does, and each tick is enqueued once in all.
    :param max_run_time: seconds a job may run before it is stopped and its
        attempt counted as an error, for job classes without a
        ``max_run_time`` of their own (None: no limit).
    :param retain_finished: how long finished jobs (kept with
        ``keep_finished``) are kept before they are deleted: seconds, an age
        such as ``"7d"``, or None / ``"never"``; default 7 days (see
        :mod:`que_core.retention` for why).
    :param retain_expired: the same for expired and cancelled jobs; default
        30 days.
    :param prune_interval: seconds between retention rounds (one worker
        process at a time prunes).
    :param async_concurrency: how many ``async def`` jobs run at once on the
        worker's event loop (0: none; the threads leave them alone anyway).
        The loop is started only when such job classes are registered.
    :param async_adapter: the adapter whose async side runs them (its name;
        default: *adapter* when it has one, else the installed one).
    """

    def __init__(
        self,
        dsn: str | None = None,
        *,
        adapter: str | Adapter | None = None,
        queues: Sequence[str] = _D["queues"],
        worker_count: int | None = None,
        worker_priorities: Sequence[int | None] | None = _D["priorities"],
        poll_interval: float = _D["poll_interval"],
        batch_size: int = _D["batch_size"],
        listen: bool = _D["listen"],
        schedules: Sequence[Schedule] = (),
        scheduler: bool = True,
        max_run_time: float | None = _D["max_run_time"],
        retain_finished: float | str | None = _D["retain_finished"],
        retain_expired: float | str | None = _D["retain_expired"],
        prune_interval: float = retention.PRUNE_EVERY,
        async_concurrency: int = _D["async_concurrency"],
        async_adapter: str | AsyncAdapter | None = None,
    ) -> None:
        source = "" if dsn else "env DATABASE_URL"
        dsn = dsn or os.environ.get("DATABASE_URL")
        if not dsn:
            raise ConfigurationError("no database: pass dsn=... or set DATABASE_URL")
        self.dsn = check_dsn(dsn, source)
        self.adapter, self._async_adapter = _sides(adapter, async_adapter)
        if not queues:
            raise ConfigurationError("a worker needs at least one queue")
        self.queues = [str(q) for q in queues]
        if worker_priorities is None:
            count = _D["workers"] if worker_count is None else worker_count
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
        if batch_size < 1:
            raise ConfigurationError(f"batch size {batch_size!r} must be at least 1")
        if async_concurrency < 0:
            raise ConfigurationError(
                f"async concurrency {async_concurrency!r} must be 0 or more")
        self.async_concurrency = async_concurrency
        self.worker_priorities = priorities
        self.poll_interval = poll_interval
        self.batch_size = batch_size
        self.listen = listen
        self.extra_schedules = list(schedules)
        self.run_scheduler = scheduler
        self.scheduler: Scheduler | None = None
        self.max_run_time = check_max_run_time(max_run_time, "Worker")
        self.retention = retention.Retention.of(retain_finished, retain_expired)
        if prune_interval <= 0:
            raise ConfigurationError(f"prune interval {prune_interval!r} must be positive")
        self.prune_interval = prune_interval
        self.dispatcher = Dispatcher()
        self.throughput = Throughput()
        self._stopping = threading.Event()  # take no new jobs
        self._stop_event = threading.Event()  # and stop reconnecting
        self.listener: Listener | None = None
        self.threads: list[WorkerThread] = []
        self._slots: list[Callable[[], WorkerThread]] = []
        self._threads_lock = threading.Lock()
        self.watchdog: Watchdog | None = None
        self.janitor: retention.Janitor | None = None
        #: Runs the async def jobs (None: no such job class registered).
        self.async_worker: AsyncWorker | None = None
        self._started = False

    def __repr__(self) -> str:
        return (
            f"<Worker {mask_password(self.dsn)} adapter={self.adapter.name} "
            f"queues={self.queues} priorities={self.worker_priorities}"
            + (f" async_concurrency={self.async_concurrency} "
               f"async_adapter={self.async_worker.adapter.name}" if self.async_worker else "")
            + ">"
        )

    def _connect(self) -> Connection:
        return self.adapter.connect(self.dsn)

    def start(self) -> Worker:
        """Connect, register and start working. Raises at once when the
        database cannot be reached or has no que-core schema."""
        if self._started:
            raise QueError("this worker was already started")
        from que_core.migrations import require_latest

        self._started = True
        conn = self._connect()
        try:
            require_latest(conn)
            check_sessions_last(conn, self._connect, mask_password(self.dsn))
        finally:
            conn.close()
        plan = declared(self.extra_schedules) if self.run_scheduler else []
        scheduler = Scheduler(self._connect, plan, self._stopping) if plan else None
        watchdog = Watchdog(self._connect, self.dispatcher, self.queues, self._held,
                            lambda: [t.running_now() for t in self.threads])
        listener = Listener(self._connect, self.queues, self.worker_priorities,
                            self.dispatcher, self.listen, self._stop_event,
                            throughput=self.throughput, watchdog=watchdog)
        listener.open()
        self.listener = listener
        self.watchdog = watchdog
        durations, set_aside = Durations(), SetAside()
        async_classes = sorted(name for name, cls in registry.items() if is_async(cls))
        if async_classes and self.async_concurrency:
            self.async_worker = AsyncWorker(
                self._async_side(), self.dsn, self._connect, self.queues, async_classes,
                concurrency=self.async_concurrency, poll_interval=self.poll_interval,
                set_aside=set_aside, stopping=self._stopping, stop_event=self._stop_event,
                throughput=self.throughput, watchdog=watchdog, max_run_time=self.max_run_time)
            self.dispatcher.followers.append(self.async_worker.dispatcher)
        #: Each slot's thread, made again when the watchdog gives one up.
        self._slots = [
            partial(WorkerThread, i, p, self._connect, self.queues, self.dispatcher,
                    batch_size=self.batch_size, poll_interval=self.poll_interval,
                    durations=durations, set_aside=set_aside,
                    throughput=self.throughput,
                    stopping=self._stopping, stop_event=self._stop_event,
                    skip_classes=async_classes, watchdog=watchdog,
                    max_run_time=self.max_run_time, given_up=self._given_up)
            for i, p in enumerate(self.worker_priorities)
        ]
        self.threads = [make() for make in self._slots]
        watchdog.start()
        listener.start()
        for thread in self.threads:
            thread.start()
        if scheduler is not None:
            self.scheduler = scheduler
            scheduler.start()
        if self.async_worker is not None:
            self.async_worker.start()
        if self.retention.enabled:
            self.janitor = retention.Janitor(self._connect, self.retention,
                                             self.prune_interval, self._stop_event)
            self.janitor.start()
        log.info("worker started: %r", self)
        call_hook("que_worker_started", worker=self)
        return self

    @property
    def running(self) -> bool:
        return (self.listener is not None and not self._stopping.is_set()
                and any(t.is_alive() for t in self.threads))

    def busy_count(self) -> int:
        """How many jobs are running now (on threads and on the event loop)."""
        busy = sum(1 for t in self.threads if t.current is not None)
        return busy + (self.async_worker.busy_count() if self.async_worker else 0)

    def _async_side(self) -> AsyncAdapter:
        if self._async_adapter is None:
            self._async_adapter = get_async_adapter()
        return self._async_adapter

    def _held(self) -> list[int]:
        """The ids of the jobs in the worker threads' batches (the watchdog
        looks for cancel requests among them)."""
        return [i for t in self.threads for i in t.batch_ids]

    def _given_up(self, stuck: WorkerThread) -> None:
        """The watchdog gave up on *stuck* (its job did not stop): a new
        thread takes its slot (the watchdog takes its job over)."""
        with self._threads_lock:
            if stuck not in self.threads:
                return
            slot = self.threads.index(stuck)
            fresh = self.threads[slot] = self._slots[slot]()
        fresh.start()

    def stop(self, timeout: float | None = None) -> bool:
        """Stop taking jobs, let running ones finish, release the rest.

        With *timeout*, wait at most that many seconds for running jobs;
        then their sessions are terminated (nothing a hung job does later
        can commit, and its locks are freed: a hung job's thread is left
        behind, and its job may run again elsewhere). Returns True when
        every running job finished in time.
        """
        if self.listener is None:
            return True
        deadline = None if timeout is None else time.monotonic() + timeout
        if self.async_worker is not None:
            self.async_worker.stopping(deadline)
        self._stopping.set()
        self.dispatcher.stop()

        def left() -> float | None:
            return None if deadline is None else max(0.0, deadline - time.monotonic())

        while True:  # a thread given up meanwhile has a new one in its slot
            with self._threads_lock:
                busy = [t for t in self.threads if t.is_alive() and not t.guard.abandoned]
            if not busy or left() == 0.0:
                break
            busy[0].join(min(0.1, left() or 0.1))
        for helper in self.watchdog.takeovers if self.watchdog else ():
            helper.join(left())  # writing the outcomes of stuck jobs
        if self.scheduler is not None:
            self.scheduler.join(5.0)  # a statement at most: it stops at _stopping
        hung = [t for t in self.threads if t.is_alive() and not t.guard.abandoned]
        async_hung = self.async_worker is not None and not self.async_worker.stop(deadline)
        if hung:
            log.warning(
                "shutdown deadline passed with %s job(s) still running: ending their "
                "sessions and releasing their locks", len(hung),
            )
            end_sessions(self._connect, [t.backend_pid for t in hung if t.backend_pid])
        self._stop_event.set()  # from here on, no more reconnect attempts
        if self.watchdog is not None:
            self.watchdog.stop()
        if self.janitor is not None:
            self.janitor.join(5)
        self.listener.join()
        self.listener.shutdown(self._connect)  # if its thread could not
        log.info("worker stopped")
        call_hook("que_worker_stopped", worker=self)
        return not hung and not async_hung

    def __enter__(self) -> Worker:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
