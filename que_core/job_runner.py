"""Worker threads: each takes locked jobs from the buffer and runs them on
its own session, then tells the locker to unlock them (and to delete the
ones that returned without resolving themselves: the locker deletes them in
batches, one commit for many jobs, before it unlocks them)."""

from __future__ import annotations

import logging
import math
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from que_core.backoff import retry_connect
from que_core.config import settings
from que_core.connection import Connection
from que_core.errors import ConnectionLost, DatabaseError, QueError
from que_core.job import Job, registry
from que_core.job_buffer import Done, JobBuffer, LockedJob
from que_core.locker import Locker
from que_core.plugins import hooks
from que_core.sql import q

log = logging.getLogger("que_core.worker")


class UnknownJobClass(QueError):
    """A job row names a class this worker has not registered."""


class BadJobRow(QueError):
    """A job row that cannot be made into a job (undecodable arguments,
    kwargs that are not an object, values its class refuses)."""


class SessionLeftInTransaction(QueError):
    """The job returned with its session inside a transaction block (or with
    autocommit turned off): what it left uncommitted was rolled back."""


#: The longest retry delay written (a century). Longer ones, NaN, infinities
#: and negative ones make the UPDATE fail, and the job would run again at once.
MAX_RETRY_DELAY = 100 * 365.25 * 86400


def _text(value: str, limit: int) -> str:
    # PostgreSQL text cannot hold NUL, nor UTF-8 a lone surrogate (from a
    # surrogateescape'd file name, say); the SQL trims to the column limit.
    value = value.replace("\x00", "\\0")[: limit * 2]
    return value.encode("utf-8", "backslashreplace").decode("utf-8")


def _describe(exc: BaseException) -> str:
    try:
        text = str(exc)
    except Exception:
        text = "<str() of the exception raised>"
    return f"{type(exc).__name__}: {text}"


def _backtrace(exc: BaseException) -> str:
    try:
        return "".join(traceback.format_exception(exc))
    except Exception:
        return _describe(exc) + "\n<the traceback could not be formatted>"


def _call_hook(name: str, **kwargs: Any) -> None:
    try:
        getattr(hooks(), name)(**kwargs)
    except Exception:
        log.exception("que plugin hook %s raised; ignored", name)


class JobRunner(threading.Thread):
    def __init__(
        self,
        index: int,
        max_priority: int | None,
        connect: Callable[[], Connection],
        buffer: JobBuffer,
        locker: Locker,
        stop_event: threading.Event,
    ) -> None:
        super().__init__(name=f"que-worker-{index}", daemon=True)
        self.max_priority = max_priority
        self._connect = connect
        self.buffer = buffer
        self.locker = locker
        self._stop_event = stop_event
        self.conn: Connection | None = None
        self.current: LockedJob | None = None
        #: The session holding this thread's shared lock on the current job.
        self._lock_conn: Connection | None = None
        #: Backend pid of this thread's session (ended if a job outlives shutdown).
        self.backend_pid: int | None = None

    def run(self) -> None:
        try:
            while True:
                locked = self.buffer.take(self.max_priority)
                if locked is None:
                    return
                self.current = locked
                done = Done.UNLOCK
                try:
                    done = self.work(locked)
                except Exception:
                    log.exception("job %s: unexpected error in the worker", locked.id)
                finally:
                    self.current = None
                    self.locker.job_done(locked.id, done)
        finally:
            if self.conn is not None:
                self.conn.close()

    def _session(self) -> Connection | None:
        if self.conn is None or self.conn.closed:
            if self.conn is not None:
                self.conn.close()
            self.conn = retry_connect(self._connect, self._stop_event, log, self.name)
            self.backend_pid = None
            if self.conn is not None:
                try:
                    ((self.backend_pid,),) = self.conn.execute(q("backend_pid"))
                except DatabaseError:
                    self.conn.close()
                    return self._session()
        return self.conn

    def work(self, locked: LockedJob) -> Done:
        """Run one job and record its outcome. Never raises for the job's
        sake: a job's failure is the job's, not the worker's. Returns what
        the locker is to do with it: DELETE when the job returned without
        resolving itself (the locker deletes it, with others, in one commit,
        before it unlocks it).

        The job runs under a shared advisory lock of this thread's own
        session as well as the locker's, so that losing the locker's session
        mid-job does not let another worker start it."""
        if locked.token == 0:  # no locker: the caller's session holds the job's lock
            return self._work(locked, defer_destroy=False)[1]
        if not self._share_lock(locked):
            return Done.UNLOCK
        job, done = None, Done.UNLOCK
        try:
            job, done = self._work(locked, defer_destroy=True)
        finally:
            clean = self._unshare_lock(locked.id)
        if clean:
            return done
        if job is not None:
            # The outcome written in that transaction is gone with it: the
            # run counts as an error (retried, in time expired), never as a
            # silent success that leaves the job to run again at once.
            return self._record_error(job, SessionLeftInTransaction(
                "the job left its session inside a transaction block (or with autocommit "
                "off): its uncommitted work was rolled back and the session replaced"), 0.0)
        return Done.UNLOCK

    def _share_lock(self, locked: LockedJob) -> bool:
        attempts = 0
        while True:
            conn = self._session()
            if conn is None:
                return False  # stopping before we could connect: the job stays as it was
            try:
                ((ok,),) = conn.execute(q("runner_lock_job"), (locked.id, locked.token))
                if ok is False:
                    conn.execute(q("runner_unlock_lost"), (locked.token, locked.id))
            except DatabaseError as exc:
                conn.close()  # releases whatever it took
                attempts += 1
                if attempts >= 3:
                    log.warning("job %s: cannot lock it on this thread's session (%s)",
                                locked.id, exc)
                    return False
                continue
            if not ok:
                log.warning(
                    "job %s: this worker's locker lost its session (and the job's lock) "
                    "before the job started; not running it here",
                    locked.id,
                )
                return False
            self._lock_conn = conn
            return True

    def _unshare_lock(self, job_id: int) -> bool:
        """Release this thread's lock; False when the session turned out to
        be inside a transaction block (it is then closed: rolled back)."""
        conn, self._lock_conn = self._lock_conn, None
        if conn is None or conn is not self.conn or conn.closed:
            return True  # that session is gone, and the lock with it
        try:
            ((_, clean),) = conn.execute(q("runner_unlock_job"), (job_id,))
        except DatabaseError as exc:
            conn.close()  # which releases the lock
            return exc.sqlstate != "25P02"  # in a failed transaction block
        if not clean:
            log.warning("job %s left its session inside a transaction block: closing it", job_id)
            conn.close()
        return bool(clean)

    def _work(self, locked: LockedJob, defer_destroy: bool) -> tuple[Job | None, Done]:
        conn = self._session()
        if conn is None:
            return None, Done.UNLOCK
        cls = registry.get(locked.job_class)
        problem = locked.problem
        try:
            job = (cls or Job)(
                locked.args,
                locked.kwargs,
                id=locked.id,
                queue=locked.queue,
                priority=locked.priority,
                run_at=locked.run_at,
                error_count=locked.error_count,
                tags=locked.data.get("tags") or (),
                conn=conn,
            )
        except Exception as exc:  # a row its class refuses: the job's error, as any other
            job = Job(id=locked.id, queue=locked.queue, priority=locked.priority,
                      run_at=locked.run_at, error_count=locked.error_count, conn=conn)
            problem = problem or f"it cannot be built from its row ({_describe(exc)})"
        job.job_class = locked.job_class
        _call_hook("que_job_started", job=job)
        start = time.monotonic()
        try:
            if problem is not None:
                raise BadJobRow(f"job {locked.id} cannot run: {problem}")
            if cls is None:
                raise UnknownJobClass(
                    f"unknown job class {locked.job_class!r}: no such Job subclass is "
                    "registered in this worker (import its module)"
                )
            job.run(*job.args, **job.kwargs)
        except BaseException as exc:
            duration = time.monotonic() - start
            done = self._record_error(job, exc, duration)
            if not isinstance(exc, Exception):  # KeyboardInterrupt, SystemExit
                log.warning("job %s raised %s; recorded as an error", job.id, type(exc).__name__)
            return job, done
        duration = time.monotonic() - start
        done = Done.UNLOCK
        if not job.resolved:
            keep = job.keep_finished if job.keep_finished is not None else settings.keep_finished
            if keep:
                done = self._write(job, "runner_finish_job", (job.id,))
            elif defer_destroy:
                done = Done.DELETE
            else:
                done = self._write(job, "runner_destroy_job", (job.id,))
        # A job that asked to run again later, or expired itself, says so.
        event = {"retry_job": "retried", "expire_job": "expired"}.get(
            job._resolved_by or "", "worked"
        )
        outcome = "succeeded" if event == "worked" else event
        log.info(
            "job %s: %s id=%s queue=%s duration=%.4fs outcome=%s",
            event,
            job.job_class,
            job.id,
            job.queue,
            duration,
            outcome,
            extra={
                "que_event": event,
                "job_id": job.id,
                "job_class": job.job_class,
                "queue": job.queue,
                "duration": round(duration, 6),
                "outcome": outcome,
            },
        )
        _call_hook("que_job_succeeded", job=job, duration=duration)
        return job, done

    def _write(self, job: Job, query: str, params: tuple[Any, ...]) -> Done:
        """Write a job's outcome on this thread's session. A lost session is
        replaced and the write retried; any other error gets one retry on a
        fresh session (the job may have left its own in a bad state). An
        outcome that still cannot be written (a row another program made
        unsaveable, a trigger that refuses) sets the job aside: it would run
        and fail the same way at every poll."""
        retried = False
        while True:
            conn = self._session()
            if conn is None:
                return Done.UNLOCK  # stopping: it runs again, as after a crash
            try:
                conn.execute(q(query), params)
                return Done.UNLOCK
            except ConnectionLost as exc:
                log.warning("job %s: connection lost while saving its outcome (%s)", job.id, exc)
                conn.close()
            except DatabaseError as exc:
                conn.close()
                if retried:
                    log.warning("job %s: cannot save its outcome (%s); it is set aside",
                                job.id, _describe(exc))
                    return Done.SET_ASIDE
                retried = True

    def _record_error(self, job: Job, exc: BaseException, duration: float) -> Done:
        error_count = job.error_count + 1
        message = _text(_describe(exc), 500)
        backtrace = _text(_backtrace(exc), 10000)
        expire = error_count > job.maximum_retry_count
        delay = 0.0
        if not expire:
            default = float(error_count**4 + 3)
            try:
                delay = float(job.retry_delay(error_count))
            except Exception:
                log.exception("job %s: retry_delay raised; using the default", job.id)
                delay = default
            if not 0 <= delay <= MAX_RETRY_DELAY:
                log.warning("job %s: retry_delay returned %r; using %s", job.id, delay,
                            "the default" if math.isnan(delay) else "the nearest sane one")
                delay = default if math.isnan(delay) else min(max(delay, 0.0), MAX_RETRY_DELAY)
        if expire:
            done = self._write(job, "error_expire_job", (message, backtrace, job.id))
        else:
            done = self._write(job, "error_job", (delay, message, backtrace, job.id))
        if done is Done.SET_ASIDE:
            log.warning("job %s: %s failed (%s) and its error could not be saved",
                        job.id, job.job_class, message)
            return done
        outcome = "expired" if expire else "errored"
        log.warning(
            "job %s: %s id=%s queue=%s duration=%.4fs outcome=%s error=%s%s",
            outcome,
            job.job_class,
            job.id,
            job.queue,
            duration,
            outcome,
            message,
            "" if expire else f" retry_in={delay:g}s",
            extra={
                "que_event": outcome,
                "job_id": job.id,
                "job_class": job.job_class,
                "queue": job.queue,
                "duration": round(duration, 6),
                "outcome": outcome,
                "error": message,
                "retry_in": None if expire else delay,
            },
        )
        if expire:
            _call_hook("que_job_expired", job=job, error=exc, duration=duration)
        else:
            _call_hook("que_job_errored", job=job, error=exc, duration=duration, retry_in=delay)
        return done
