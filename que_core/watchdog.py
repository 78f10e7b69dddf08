"""The watchdog: stops the jobs that must stop, wherever they are stuck.

One thread per :class:`~que_core.worker.Worker`. It sees the jobs running
on the worker's threads by looking at the threads (each says what it runs,
:meth:`~que_core.worker_thread.WorkerThread.running_now`: nothing to do per
job on the hot path), and the event loop's by their registration
(:meth:`Watchdog.register`), each with two ways to stop it
(:class:`Running`). The watchdog stops a job

* that runs past its ``max_run_time``: at once, and the attempt becomes an
  error "timed out after N seconds" (retried, in time expired, as any error);
* that was cancelled while it runs: once :data:`CANCEL_GRACE` has passed, in
  which the job may see ``self.cancelled`` and return by itself; it is
  recorded as cancelled.

Stopping goes in two steps:

1. ``interrupt``: for a sync job, :class:`~que_core.errors.JobStopped` raised
   in its own code (:class:`que_core.stopping.Guard`) and its session's
   statement cancelled if it is running one (``pg_cancel_backend``). A job in
   a Python loop, or waiting for the server, comes back at once; the worker
   thread rolls back whatever transaction it left open, as for any job.
2. ``give_up``, :data:`GRACE` later, for a job still not back: it is stuck
   where neither reaches (C code, ``time.sleep``). Its thread is given up
   and replaced (see :mod:`que_core.worker_thread`), and the watchdog takes
   its job over (:meth:`Watchdog._take_over`): a spare session, opened when
   the stop began, queues for the job's lock; then the stuck session is
   ended (``pg_terminate_backend``: its transaction rolled back, its locks
   released), and PostgreSQL grants the waiting lock before any other
   request, so no other worker can take the job in between; the spare
   session writes the job's outcome and releases it. Logged as an error.

Cancel requests (``que_core_cancels``, migrations/7.6) are read for the jobs
this worker holds (:meth:`Watchdog.poll`, on the listener's session and
thread): at once when the listener hears of one on ``que_core_control``,
and every :data:`POLL_EVERY` seconds while it holds any (the fallback when
the NOTIFY is missed). Paused queues are read each :data:`POLL_EVERY`
seconds too, so that a resumed queue's jobs are taken within a second even
without LISTEN. The watchdog's own session is opened only when a job is
being stopped.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import NamedTuple

from que_core.connection import Connection
from que_core.dispatch import Dispatcher
from que_core.errors import ConnectionLost, DatabaseError, JobCancelled, JobStopped, JobTimedOut
from que_core.job import Job
from que_core.sql import q

log = logging.getLogger("que_core.worker")

#: How often the watchdog looks at the running jobs' clocks.
TICK = 0.05
#: How long a stopped job gets to come back before its thread is given up.
GRACE = 0.5
#: How long a cancelled job gets to notice ``self.cancelled`` and return.
CANCEL_GRACE = 0.5
#: Seconds between reads of cancel requests and paused queues.
POLL_EVERY = 1.0


class Handover(NamedTuple):
    """A job whose runner was given up, for the watchdog to take over."""

    job_id: int
    #: The backend pid of the session stuck with it (to end), if any.
    backend_pid: int | None
    #: Writes the job's outcome on the session given (which holds its lock).
    write: Callable[[Connection], None]


class Running:
    """One job being run, as the watchdog sees it.

    *interrupt* raises the given stop in the job's code (False: it is not
    running any more); *give_up* frees its slot when it does not come back,
    and hands the job over (None: it came back meanwhile). Without
    *give_up*, nothing more is done (a task on an event loop, which
    interrupt cancels).
    """

    __slots__ = ("cancel_at", "deadline", "finished", "give_up", "given_up", "interrupt", "job",
                 "limit", "spare", "spare_opener", "started", "stopped_at")

    def __init__(self, job: Job, limit: float | None,
                 interrupt: Callable[[type[JobStopped]], bool],
                 give_up: Callable[[], Handover | None] | None,
                 started: float | None = None) -> None:
        self.job = job
        self.limit = limit
        self.started = time.monotonic() if started is None else started
        self.deadline = None if limit is None else self.started + limit
        self.interrupt = interrupt
        self.give_up = give_up
        #: When to stop it for its cancel request (None: none).
        self.cancel_at: float | None = None
        self.stopped_at: float | None = None
        self.given_up = False
        #: Set when its runner unregistered it (it came back, or was taken over).
        self.finished = False
        #: A session opened when the stop began, in case the job is taken over.
        self.spare: tuple[Connection, int] | None = None
        self.spare_opener: threading.Thread | None = None


class Watchdog(threading.Thread):
    def __init__(self, connect: Callable[[], Connection], dispatcher: Dispatcher,
                 queues: Sequence[str], held: Callable[[], Iterable[int]],
                 slots: Callable[[], Iterable[Running | None]] = tuple) -> None:
        super().__init__(name="que-watchdog", daemon=True)
        self._connect = connect
        self.dispatcher = dispatcher
        self.queues = list(queues)
        #: The ids of the jobs this worker holds (claimed, running or not).
        self._held = held
        #: What the worker's threads run now (called on the watchdog's thread only).
        self._slots = slots
        self._lock = threading.Lock()
        self._running: dict[int, Running] = {}
        self._halt = threading.Event()
        self._wake = threading.Event()
        self.conn: Connection | None = None
        #: The session is used by this thread and by worker threads handing over.
        self._conn_lock = threading.RLock()
        self._paused: set[str] = set()
        self._complained = 0.0
        #: Cancel requests of jobs this worker holds: id -> (when, why).
        self.requests: dict[int, tuple[str, str | None]] = {}
        #: Threads writing the outcomes of jobs taken over.
        self.takeovers: list[threading.Thread] = []

    # -- what the job runners call -----------------------------------------------

    def register(self, running: Running) -> Running:
        """*running*'s job starts; watched until :meth:`unregister`."""
        assert running.job.id is not None
        request = self.requests.get(running.job.id)
        if request is not None:  # asked for while it waited in its batch
            self._cancel(running, request, time.monotonic())
        with self._lock:
            self._running[running.job.id] = running
        return running

    def unregister(self, running: Running) -> None:
        with self._lock:
            if running.job.id is not None and self._running.get(running.job.id) is running:
                del self._running[running.job.id]
        self.done(running)

    def done(self, running: Running) -> None:
        """*running*'s job ended (came back, or was taken over)."""
        running.finished = True
        spare = running.spare
        if spare is not None and not running.given_up:  # it came back by itself
            spare[0].close()

    def poll(self, conn: Connection) -> None:
        """Read the cancel requests of the jobs this worker holds, and which
        of its queues are paused, on *conn* (the listener's session, from its
        thread): at once when it hears of a cancel, else each POLL_EVERY s.
        The watchdog's thread acts on them. Raises ConnectionLost; other
        database errors are logged."""
        with self._lock:
            held = set(self._running)
        held.update(self._held())
        try:
            rows = conn.execute(q("cancel_requests"), (sorted(held),)) if held else []
            paused = {str(r[0]) for r in conn.execute(q("paused_queues"), (self.queues,))}
        except ConnectionLost:
            raise
        except DatabaseError as exc:
            log.warning("que watchdog: cannot read cancel requests and paused queues: %s", exc)
            return
        self.requests = {int(i): (str(at), reason) for i, at, reason in rows}
        if self._paused - paused:  # resumed: there may be jobs to take
            self.dispatcher.announce()
        self._paused = paused
        if rows:
            self._wake.set()

    def cancel_statement(self, backend_pid: int) -> None:
        """Cancel the statement session *backend_pid* is running, if any."""
        with self._conn_lock:
            conn = self._session()
            if conn is None:
                return
            try:
                conn.execute(q("cancel_statement"), (backend_pid,))
            except DatabaseError as exc:
                log.warning("cannot cancel the statement of a job being stopped: %s", exc)
                self._drop_session()

    def hand_over(self, handover: Handover) -> threading.Thread | None:
        """From a worker thread whose job was stopped, and whose session may
        be broken mid-protocol (the stop can land in a driver's Python code):
        take the job over as for a given-up thread, on a spare session opened
        now; the thread then starts on a new session. Returns the thread
        writing the outcome (join it before touching the claims again)."""
        r = Running(Job(id=handover.job_id), None, lambda why: False, None)
        return self._take_over(r, handover)

    def stop(self) -> None:
        self._halt.set()
        self._wake.set()
        if self.is_alive():
            self.join(5)
        with self._conn_lock:
            self._drop_session()

    # -- the thread ------------------------------------------------------------------

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                self._tick(time.monotonic())
            except Exception:  # never die: the jobs' limits depend on this thread
                log.exception("que watchdog: unexpected error; going on")
                self._drop_session()
                self._halt.wait(1.0)
            self._wake.wait(TICK)
            self._wake.clear()

    def _tick(self, now: float) -> None:
        with self._lock:
            running = list(self._running.values())
        running.extend(r for r in self._slots() if r is not None)
        requests = self.requests
        for r in running:
            if requests and r.job._cancel is None and r.job.id in requests:
                log.info("job %s (%s) was cancelled: stopping it", r.job.id, r.job.job_class)
                self._cancel(r, requests[r.job.id], now)
            if r.stopped_at is None:
                if r.deadline is not None and now >= r.deadline:
                    assert r.limit is not None
                    unit = "second" if r.limit == 1 else "seconds"
                    self._stop_job(r, JobTimedOut(f"timed out after {r.limit:g} {unit}"), now,
                                   f"ran past its max_run_time of {r.limit:g} s")
                elif r.cancel_at is not None and now >= r.cancel_at:
                    reason = r.job._cancel[1] if r.job._cancel else None
                    self._stop_job(r, JobCancelled(reason or "cancelled"), now, "was cancelled")
            elif not r.given_up and now >= r.stopped_at + GRACE:
                r.given_up = True
                handover = r.give_up() if r.give_up is not None else None
                if handover is not None:
                    log.error("job %s (%s) did not stop within %g s (stuck outside Python code: "
                              "C code, a blocking call, time.sleep): its thread was given up "
                              "and replaced, its session ended", r.job.id, r.job.job_class,
                              GRACE)
                    self._take_over(r, handover)

    def _stop_job(self, r: Running, why: JobStopped, now: float, what: str) -> None:
        r.stopped_at = now
        r.job._stop = why  # before the interrupt: the job's outcome is read from it
        if r.interrupt(type(why)):
            log.warning("job %s (%s) %s: stopping it", r.job.id, r.job.job_class, what)
            if r.give_up is not None:  # in case it does not come back
                opener = threading.Thread(target=self._open_spare, args=(r,),
                                          name="que-spare-session", daemon=True)
                opener.start()
                r.spare_opener = opener

    def _open_spare(self, r: Running) -> None:
        try:
            conn = self._connect()
            ((pid,),) = conn.execute(q("backend_pid"))
        except DatabaseError as exc:
            log.warning("que watchdog: cannot open a spare session: %s", exc)
            return
        r.spare = (conn, int(pid))
        if r.finished and not r.given_up:  # it came back meanwhile
            conn.close()

    def _take_over(self, r: Running, handover: Handover) -> threading.Thread | None:
        """Take the job of a given-up runner over (see the module's docstring)."""
        with self._conn_lock:
            return self._taking_over(r, handover)

    def _taking_over(self, r: Running, handover: Handover) -> threading.Thread | None:
        if r.spare_opener is not None:
            r.spare_opener.join(5)
        if r.spare is None:
            self._open_spare(r)
        if r.spare is None:
            log.error("job %s: no session to take it over: ending its stuck session; it runs "
                      "again", handover.job_id)
            if handover.backend_pid is not None:
                self._end_session(handover.backend_pid)
            return None
        spare, spare_pid = r.spare
        writer = threading.Thread(target=_write_over, args=(spare, handover),
                                  name=f"que-take-over-{handover.job_id}", daemon=True)
        self.takeovers = [t for t in self.takeovers if t.is_alive()] + [writer]
        writer.start()
        if handover.backend_pid is None:
            return writer
        conn = self._session()
        give_up = time.monotonic() + 2
        try:
            while conn is not None and writer.is_alive() and time.monotonic() < give_up:
                ((waiting,),) = conn.execute(q("waits_for_lock"), (spare_pid,))
                if waiting:
                    break
                time.sleep(0.002)
        except DatabaseError as exc:
            log.warning("que watchdog: %s", exc)
            self._drop_session()
        self._end_session(handover.backend_pid)
        return writer

    def _end_session(self, pid: int) -> None:
        """End session *pid* and wait (5 s at most) until it is gone."""
        conn = self._session()
        if conn is None:
            from que_core.listener import end_sessions

            end_sessions(self._connect, [pid])
            return
        try:
            conn.execute(q("terminate_backends"), ([pid],))
            give_up = time.monotonic() + 5
            while time.monotonic() < give_up:
                ((alive,),) = conn.execute(q("backends_alive"), ([pid],))
                if not alive:
                    break
                time.sleep(0.005)
        except DatabaseError as exc:
            log.warning("que watchdog: cannot end the session of a stuck job: %s", exc)
            self._drop_session()

    def _cancel(self, r: Running, request: tuple[str, str | None], now: float) -> None:
        if r.job._cancel is None:
            r.job._cancel = request
            r.cancel_at = now + CANCEL_GRACE

    # -- its session -------------------------------------------------------------------

    def _session(self) -> Connection | None:
        if self.conn is not None and not self.conn.closed:
            return self.conn
        self._drop_session()
        try:
            conn = self._connect()
            # Statements here must never hold a stopping job's thread for long.
            conn.execute("SET statement_timeout = 5000")
        except DatabaseError as exc:
            now = time.monotonic()
            if now >= self._complained:
                log.warning("que watchdog: cannot connect (%s); retrying", exc)
                self._complained = now + 30
            return None
        self.conn = conn
        return conn

    def _drop_session(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.close()


def _write_over(conn: Connection, handover: Handover) -> None:
    """On a thread of its own: wait for the job's lock (granted once the
    stuck session is ended), write its outcome, close (releasing it all)."""
    try:
        conn.execute(q("lock_job_waiting"), (handover.job_id,))
        handover.write(conn)
    except DatabaseError as exc:
        log.error("job %s: could not write its outcome after its runner was given up (%s); "
                  "it will run again", handover.job_id, exc)
    finally:
        conn.close()

