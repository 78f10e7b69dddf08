"""A worker thread: claims a batch of jobs on its own session, runs them one
after another, and writes their outcomes with its next claim (see
:mod:`que_core.claims`). When a claim finds nothing it releases what it holds
and sleeps until a notification, its poll interval or the stop.

A batch is sized to take about :data:`BATCH_SECONDS` of work, from how long
jobs of each class took lately, so that quick jobs go many to a round trip
while a slow job never holds back a queue of others behind it.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
from collections.abc import Callable, Sequence

from que_core import execute
from que_core.backoff import retry_connect
from que_core.claims import Claims, SetAside
from que_core.connection import Connection, Row
from que_core.dispatch import Dispatcher
from que_core.errors import ConnectionLost, DatabaseError, JobStopped
from que_core.execute import Outcome
from que_core.job import Job, registry
from que_core.sql import q
from que_core.stopping import Guard
from que_core.throughput import Throughput
from que_core.watchdog import Handover, Running, Watchdog

log = logging.getLogger("que_core.worker")


def session_name() -> str:
    """The application_name of this process's worker sessions: `que web`
    finds the worker (que_lockers' ruby_pid and ruby_hostname) of a running
    job by it (see queries.sql, admin_running)."""
    return f"que {os.getpid()}@{socket.gethostname()}"[:63]


#: About how long the jobs of one batch are expected to take, at most.
BATCH_SECONDS = 0.005


class Durations:
    """Recent run times by job class (moving averages), shared by a worker's
    threads. A class not seen yet is taken to be slow, so it comes alone."""

    UNSEEN = 0.05
    MOST = 1000  # classes remembered; rows may name any number of unknown ones

    def __init__(self) -> None:
        self._by_class: dict[str, float] = {}
        #: Of the jobs of every class, lately.
        self.recent = self.UNSEEN

    def expected(self, job_class: str) -> float:
        return self._by_class.get(job_class, self.UNSEEN)

    def observe(self, job_class: str, seconds: float) -> None:
        self.recent = 0.7 * self.recent + 0.3 * seconds
        before = self._by_class.get(job_class)
        if before is None and len(self._by_class) >= self.MOST:
            return
        self._by_class[job_class] = seconds if before is None else 0.7 * before + 0.3 * seconds


class _GivenUp(BaseException):
    """The watchdog gave up on this thread while its job was stuck: another
    thread has its slot, and its job's outcome is written elsewhere."""


class WorkerThread(threading.Thread):
    def __init__(
        self,
        index: int,
        max_priority: int | None,
        connect: Callable[[], Connection],
        queues: Sequence[str],
        dispatcher: Dispatcher,
        *,
        batch_size: int,
        poll_interval: float,
        durations: Durations,
        set_aside: SetAside,
        throughput: Throughput | None = None,
        stopping: threading.Event,
        stop_event: threading.Event,
        skip_classes: Sequence[str] = (),
        name: str | None = None,
        watchdog: Watchdog | None = None,
        max_run_time: float | None = None,
        given_up: Callable[[WorkerThread], None] | None = None,
    ) -> None:
        super().__init__(name=name or f"que-worker-{index}", daemon=True)
        self.watchdog = watchdog
        self.max_run_time = max_run_time
        self._given_up = given_up
        #: Where the job's own code runs (see que_core.stopping).
        self.guard = Guard()
        #: The ids of the batch being worked (the watchdog reads it).
        self.batch_ids: tuple[int, ...] = ()
        self._job_started = 0.0
        #: The watchdog's view of the job running now (its thread's only).
        self._watched: Running | None = None
        self.max_priority = max_priority
        self._connect = connect
        self.queues = list(queues)
        self.dispatcher = dispatcher
        self.batch_size = max(1, batch_size)
        self.poll_interval = poll_interval
        self.durations = durations
        self.set_aside = set_aside
        self.throughput = throughput
        #: Job classes this thread leaves alone (the event loop's: async def).
        self.skip_classes = list(skip_classes)
        #: Set: take no new job (finish the current one).
        self._stopping = stopping
        #: Set: stop reconnecting too.
        self._stop_event = stop_event
        self._wake = threading.Event()
        self.conn: Connection | None = None
        self.claims: Claims | None = None
        #: The job running now, if any.
        self.current: Job | None = None
        #: Backend pid of this thread's session (ended if a job outlives shutdown).
        self.backend_pid: int | None = None
        #: The next claim walks every queue from its start (see Claims.next).
        self._full = True

    def run(self) -> None:
        try:
            while not self._stopping.is_set():
                if self._session() is None:
                    return
                try:
                    self._cycle()
                except DatabaseError as exc:  # lost, broken by a job, or a bad row
                    self._settle(exc)
                except Exception:  # never die silently, never spin
                    log.exception("%s: unexpected error; going on", self.name)
                    self._stop_event.wait(1.0)
        except _GivenUp:
            pass
        finally:
            if self.guard.abandoned:  # its claims are another thread's now
                if self.conn is not None:
                    self.conn.close()
                log.info("%s (given up) ended: its stuck job returned", self.name)
            else:
                self._finish()

    # -- one claim and its batch -------------------------------------------------------

    def _cycle(self) -> None:
        assert self.claims is not None
        seen = self.dispatcher.generation
        limit = self._limit()
        rows = self.claims.next(self.max_priority, limit, full=self._full)
        self._full = False
        if not rows:
            if self.claims.held or self.claims.owes:
                self.claims.flush()  # hold nothing while asleep
            polled = not self.dispatcher.wait(self._wake, self.max_priority, seen,
                                              self.poll_interval * random.uniform(0.9, 1.1))
            # A poll walks each queue from the start: it finds what a walk
            # from the last job taken cannot (jobs a lost session let go, due
            # ones ahead of it); so does a notification of a job ahead of it.
            lowest, bound = self.dispatcher.lowest_since(seen), self.claims.lowest_bound()
            self._full = polled or (lowest is not None and bound is not None and lowest < bound)
            return
        if len(rows) >= limit:  # there may be more: pass the word on
            self.dispatcher.notify(rows[-1][1])
        rows = self._trim(rows)
        self.batch_ids = tuple(r[0] for r in rows)
        try:
            for i, row in enumerate(rows):
                if self._stopping.is_set():
                    self.claims.skip(r[0] for r in rows[i:])
                    return
                self._run_one(row)
        finally:
            if not self.guard.abandoned:
                self.batch_ids = ()

    def _limit(self) -> int:
        recent = self.durations.recent
        return max(1, min(self.batch_size, int(BATCH_SECONDS / max(recent, 1e-6))))

    def _trim(self, rows: list[Row]) -> list[Row]:
        """The first rows whose jobs are expected to take BATCH_SECONDS (one
        at least); the rest are released at once for other threads."""
        assert self.claims is not None
        total, keep = 0.0, 0
        for row in rows:
            # A class not registered here fails at once: it takes no time.
            total += self.durations.expected(row[3]) if row[3] in registry else 0.0
            if keep and total > BATCH_SECONDS:
                break
            keep += 1
        if keep < len(rows):
            self.claims.skip(r[0] for r in rows[keep:])
            self.claims.next(None, 0)
        return rows[:keep]

    def _run_one(self, row: Row) -> None:
        assert self.conn is not None and self.claims is not None
        job = execute.build(row, self.conn)
        request = self.watchdog.requests.get(job.id or 0) if self.watchdog else None
        if request is not None:  # cancelled while it waited in this batch
            job._cancel = request
            self.claims.add(execute.cancelled(job))
            return
        self._job_started = time.monotonic()
        self.current = job  # the watchdog watches it from here (running_now)
        try:
            outcome = execute.run(job, self.guard if self.watchdog is not None else None)
        finally:
            if not self.guard.abandoned:
                self.current = None
            watched, self._watched = self._watched, None
            if watched is not None:
                self.watchdog.done(watched)  # type: ignore[union-attr]
        if self.guard.abandoned:
            raise _GivenUp
        self.durations.observe(job.job_class, outcome.duration)
        if self.throughput is not None:
            self.throughput.observe(row[4], row[2], outcome.duration,
                                    outcome.kind in (execute.ERROR, execute.EXPIRE))
        if job._stop is not None and self.guard.sent and self.watchdog is not None:
            self._hand_over(outcome)
            return
        if self.conn.closed:  # the job closed its session, or it was lost
            self.claims.add(outcome)
            raise ConnectionLost("the job's session was closed or lost while it ran")
        if self.conn.reset() and job._stop is None:
            log.warning("job %s left its session inside a transaction block: rolled back",
                        job.id)
            outcome = execute.left_in_transaction(outcome)
        self.claims.add(outcome)

    def _hand_over(self, outcome: Outcome) -> None:
        """The job was stopped by an exception raised in its code, which may
        have gone off in the driver's own Python code and left the session
        mid-protocol (pg8000's, psycopg's): the watchdog writes the outcome
        on a session queued for the job's lock once this one is ended, then
        this thread goes on with a new one."""
        assert self.claims is not None and self.watchdog is not None
        claims = self.claims
        writer = self.watchdog.hand_over(Handover(
            outcome.job_id, self.backend_pid, lambda conn: claims.take_over(conn, outcome)))
        if writer is not None:
            writer.join(15)
        self._close()  # ended: its locks went with it, its outcomes are written
        self._full = True

    # -- stopping its job (called by the watchdog's thread) -------------------------

    def running_now(self) -> Running | None:
        """The job this thread runs now, as the watchdog sees it (the same
        object until the job ends); called on the watchdog's thread only."""
        job = self.current
        if job is None or self.guard.abandoned:
            return None
        watched = self._watched
        if watched is None or watched.job is not job:
            watched = Running(job, execute.max_run_time(job, self.max_run_time),
                              self._interrupt, self._give_up, started=self._job_started)
            self._watched = watched
        return watched

    def _interrupt(self, why: type[JobStopped]) -> bool:
        """Raise *why* in the job's code, and cancel its statement if any."""
        pid, watchdog = self.backend_pid, self.watchdog

        def cancel_statement() -> None:
            if pid is not None and watchdog is not None:
                watchdog.cancel_statement(pid)

        return self.guard.stop(why, cancel_statement)

    def _give_up(self) -> Handover | None:
        """The job did not come back: give this thread up, if it is still in
        the job's code; a new thread takes its slot, and the watchdog its job
        (see Watchdog._take_over). None: it came back meanwhile."""
        job, claims = self.current, self.claims
        if job is None or claims is None or not self.guard.abandon():
            return None
        outcome = execute.stopped(job, time.monotonic() - self._job_started)
        if self._given_up is not None:
            self._given_up(self)
        # Quiescent from here on: this thread never touches its claims again.
        return Handover(outcome.job_id, self.backend_pid,
                        lambda conn: claims.take_over(conn, outcome))

    # -- the session ---------------------------------------------------------------------

    def _session(self) -> Connection | None:
        """A working session (reconnecting with backoff); None: stopping."""
        if self.conn is not None:
            if not self.conn.closed:
                return self.conn
            self._close()  # lost: its locks went with it
        while True:
            conn = retry_connect(self._connect, self._stop_event, log, self.name)
            if conn is None:
                return None
            try:
                ((self.backend_pid,),) = conn.execute(q("worker_session"), (session_name(),))
                break
            except DatabaseError as exc:
                log.warning("%s: new session unusable (%s); reconnecting", self.name, exc)
                conn.close()
        self.conn = conn
        if self.claims is None:
            self.claims = self._claims(conn)
        else:
            self.claims.conn = conn
        return conn

    def _claims(self, conn: Connection) -> Claims:
        return Claims(conn, self.queues, self.set_aside, skip=self.skip_classes)

    def _close(self) -> None:
        if self.claims is not None and self.claims.held:
            self.claims.lost()
        if self.conn is not None:
            self.conn.close()
        self.conn = None
        self.backend_pid = None

    def _settle(self, why: DatabaseError) -> None:
        """The claim statement failed (see Claims.settle and recover)."""
        assert self.claims is not None
        if not isinstance(why, ConnectionLost):
            try:
                if not self.claims.settle():
                    return
            except ConnectionLost as exc:
                why = exc
        self._recover(why)

    def _recover(self, why: DatabaseError) -> None:
        """The session was lost, or the claim statement failed (a job broke
        the session, an outcome cannot be written): replace the session and
        write the outcomes one by one (see Claims.recover)."""
        assert self.claims is not None
        self.claims.hold()  # off limits to the other threads meanwhile
        if self.conn is not None:
            self.conn.close()  # releases its locks
        self.conn = None
        conn = self._session()
        if conn is None:
            self.claims.lost()
            return
        if isinstance(why, ConnectionLost):
            log.warning("%s: session lost (%s); reconnected", self.name, why)
        self._full = True
        try:
            self.claims.recover(conn, why)
        except ConnectionLost as exc:
            log.warning("%s: session lost (%s); reconnecting", self.name, exc)
            self._close()

    def _finish(self) -> None:
        """Write the last outcomes, release every lock, close the session."""
        for _ in range(2):
            if self.conn is None or self.conn.closed or self.claims is None:
                break
            try:
                self.claims.flush()
                break
            except DatabaseError as exc:
                self._settle(exc)
        self._close()

