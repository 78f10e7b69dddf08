"""Running one job: from its row to its outcome.

:func:`build` makes a job from the row its claim returned, :func:`run` runs
it and says what it came to (an :class:`Outcome`), and :func:`report` logs
that and calls the plugins' hooks once the outcome is committed. Nothing
here owns a session, a lock or a thread: the worker threads, the test
helpers' ``drain`` and (for ``async def`` jobs) the event loop all run jobs
with these functions and write the outcomes in their own way (see
:mod:`que_core.claims`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
import traceback
from typing import Any

from que_core import validation
from que_core.config import settings
from que_core.connection import AsyncConnection, Connection, Row
from que_core.errors import JobCancelled, QueError
from que_core.job import Job, default_retry_delay, is_async, registry
from que_core.plugins import hooks
from que_core.stopping import Guard

log = logging.getLogger("que_core.worker")

#: The longest retry delay written (a century). Longer ones, NaN, infinities
#: and negative ones would make the UPDATE fail, and the job run again at once.
MAX_RETRY_DELAY = 100 * 365.25 * 86400

# What became of a job (Outcome.kind).
DELETE = "delete"  # returned without resolving itself: its row is deleted
FINISH = "finish"  # the same, with keep_finished: finished_at is set
RESOLVED = "resolved"  # it resolved itself (destroy, finish, expire, retry_in)
ERROR = "error"  # it raised: the error is recorded and a retry scheduled
EXPIRE = "expire"  # it raised its last allowed time: recorded, and expired
CANCEL = "cancel"  # it was cancelled: recorded so (see migrations/7.6)


class UnknownJobClass(QueError):
    """A job row names a class this worker has not registered."""


class BadJobRow(QueError):
    """A job row that cannot be made into a job (undecodable arguments,
    kwargs that are not an object, values its class refuses)."""


class ResultNotStorable(QueError):
    """run() of a class with ``keep_result`` returned a value that cannot be
    stored as JSON: that attempt fails (and is retried as any error)."""


class SessionLeftInTransaction(QueError):
    """The job returned with its session inside a transaction block (or with
    autocommit turned off): what it left uncommitted was rolled back."""


class Outcome:
    """What one run of a job came to, to be written and then reported."""

    __slots__ = ("at", "backtrace", "delay", "duration", "error", "job", "kind", "message",
                 "result")

    def __init__(self, job: Job, kind: str, duration: float,
                 error: BaseException | None = None) -> None:
        self.job = job
        self.kind = kind
        self.duration = duration
        self.error = error
        self.message = ""
        self.backtrace = ""
        self.delay = 0.0
        #: What run() returned, checked as JSON data (keep_result only).
        self.result: Any = None
        #: CANCEL: when the cancel was asked for (ISO 8601); message is its reason.
        self.at = ""

    @property
    def job_id(self) -> int:
        assert self.job.id is not None  # a claimed job has one
        return self.job.id

    @property
    def written(self) -> bool:
        """Whether que_core_next_jobs gets it among its other outcomes: all
        but deletes and self-resolved jobs, unless those keep a result."""
        if self.kind == DELETE:
            return False
        return self.kind != RESOLVED or self.job.keep_result

    def as_json(self) -> dict[str, Any]:
        """The outcome as que_core_next_jobs takes it (when :attr:`written`)."""
        out: dict[str, Any] = {"id": self.job.id,
                               "op": "result" if self.kind == RESOLVED else self.kind}
        if self.kind in (ERROR, EXPIRE):
            out.update(delay=self.delay, message=self.message, backtrace=self.backtrace)
        elif self.kind == CANCEL:
            out.update(at=self.at, reason=self.message or None)
        if self.job.keep_result and self.kind not in (ERROR, CANCEL):
            # Stored, and its waiters woken (a retry wakes nobody: not final).
            out.update(keep=True, result=self.result)
        return out


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


def call_hook(name: str, **kwargs: Any) -> None:
    """Call plugin hook *name*; a plugin's exception is logged, never the job's."""
    caller = getattr(hooks(), name)
    if not caller.get_hookimpls():
        return
    try:
        caller(**kwargs)
    except Exception:
        log.exception("que plugin hook %s raised; ignored", name)


# -- from the row to the job ---------------------------------------------------------


def build(row: Row, conn: Connection | AsyncConnection | None, *,
          for_async: bool = False) -> Job:
    """The job of a claimed row, on *conn* (an AsyncConnection when
    *for_async*: for :func:`arun`). Never raises: a row that cannot be made
    into a job, or whose class's ``run`` is of the other kind (``async def``
    or not) than *for_async* says, gives a job whose ``_problem`` says why,
    and running it records that as the job's error."""
    job_id, priority, run_at, job_class, queue, error_count, args, kwargs, data = row
    problem = None
    try:
        # Most jobs have no kwargs and no tags: spare decoding "{}" twice.
        a = json.loads(args)
        k = {} if kwargs == "{}" else json.loads(kwargs)
        d = {} if data == "{}" else json.loads(data)
    except (ValueError, RecursionError) as exc:
        # Nesting deeper than Python's json takes, an integer of more digits
        # than int() converts: the row is the job's problem, not the worker's.
        a, k, d = [], {}, {}
        problem = f"its arguments cannot be decoded ({type(exc).__name__}: {exc})"
    if not (isinstance(a, list) and isinstance(k, dict) and isinstance(d, dict)):
        a, k, d = [], {}, {}
        problem = "its args are not a JSON array, or its kwargs or data not a JSON object"
    cls = registry.get(job_class)
    if cls is None and problem is None:
        problem = (f"unknown job class {job_class!r}: no such Job subclass is registered "
                   "in this worker (import its module)")
    try:
        job = (cls or Job)(a, k, id=job_id, queue=queue, priority=priority, run_at=run_at,
                           error_count=error_count, tags=d.get("tags") or (), conn=conn)
    except Exception as exc:  # a row its class refuses: the job's error, as any other
        job = Job(id=job_id, queue=queue, priority=priority, run_at=run_at,
                  error_count=error_count, conn=conn)
        problem = problem or f"it cannot be built from its row ({_describe(exc)})"
    if problem is None and cls is not None and is_async(cls) != for_async:
        problem = (f"its class's run() is {'not ' if for_async else ''}async def, and it "
                   f"was claimed for {'the event loop' if for_async else 'a thread'}"
                   + ("" if for_async else
                      " (a worker's event loop runs it; in tests, que_core.testing.adrain)"))
    job.job_class = job_class
    job._problem = problem
    job._unknown = cls is None
    return job


# -- running it ------------------------------------------------------------------------


def max_run_time(job: Job, default: float | None) -> float | None:
    """The run-time limit of *job* in seconds: its class's, else the
    worker's *default* (None: no limit)."""
    limit = type(job).max_run_time
    return default if limit is None else float(limit)


def run(job: Job, guard: Guard | None = None) -> Outcome:
    """Run *job* and say what it came to. Never raises for the job's sake: a
    job's failure is the job's, not the worker's. With *guard*, the job's
    code may be stopped by the watchdog (see :mod:`que_core.stopping`): the
    stretch it guards is the job's own code only."""
    call_hook("que_job_started", job=job)
    start = time.monotonic()
    try:
        _check(job)
        if guard is None:
            value = job.run(*job.args, **job.kwargs)
        else:
            guard.enter()
            try:
                value = job.run(*job.args, **job.kwargs)
            finally:
                guard.leave()
        if job.keep_result:
            value = _storable(job, value)
    except BaseException as exc:
        if guard is not None:
            # The stop may have gone off inside leave() itself; it is the
            # only one ever sent, so from here on nothing else can.
            guard.leave()
        return _raised(job, exc, start)
    return _returned(job, start, value)


async def arun(job: Job) -> Outcome:
    """:func:`run` for a job whose ``run`` is ``async def``, awaited on the
    running loop. Cancelling it (the worker's shutdown) raises
    :class:`asyncio.CancelledError` here rather than recording an error; a
    cancel of the watchdog's (``job._stop`` set: timed out, cancelled) is the
    job's outcome, as for a sync job."""
    call_hook("que_job_started", job=job)
    start = time.monotonic()
    try:
        _check(job)
        value = await job.run(*job.args, **job.kwargs)
        if job.keep_result:
            value = _storable(job, value)
    except asyncio.CancelledError as exc:
        if job._stop is None:
            raise
        return stopped(job, time.monotonic() - start, exc)
    except BaseException as exc:
        return _raised(job, exc, start)
    return _returned(job, start, value)


def _check(job: Job) -> None:
    """Raise the error of a job that cannot run (see :func:`build`)."""
    if job._problem is not None:
        kind = UnknownJobClass if job._unknown else BadJobRow
        raise kind(job._problem if job._unknown else f"job {job.id} cannot run: {job._problem}")


def _raised(job: Job, exc: BaseException, start: float) -> Outcome:
    if job._stop is not None or job._cancel is not None:  # whatever it raised then
        return stopped(job, time.monotonic() - start, exc)
    if not isinstance(exc, Exception):  # KeyboardInterrupt, SystemExit
        log.warning("job %s raised %s; recorded as an error", job.id, type(exc).__name__)
    return failed(job, exc, time.monotonic() - start)


def _returned(job: Job, start: float, value: Any) -> Outcome:
    duration = time.monotonic() - start
    if job.resolved:
        outcome = Outcome(job, RESOLVED, duration)
    elif job._cancel is not None:  # it saw self.cancelled and returned, or just returned
        return cancelled(job, duration)
    else:
        keep = job.keep_result or (job.keep_finished if job.keep_finished is not None
                                   else settings.keep_finished)
        outcome = Outcome(job, FINISH if keep else DELETE, duration)
    outcome.result = value if job.keep_result else None
    return outcome


def _storable(job: Job, value: Any) -> Any:
    """*value* as JSON data to keep, or ResultNotStorable naming its type."""
    try:
        return validation.check_result(value)
    except QueError as exc:
        raise ResultNotStorable(
            f"{type(job).__qualname__} keeps its result, but {exc} (a result must be "
            "JSON: None, bool, int, float, str, and lists and dicts with string keys of those)"
        ) from None


def stopped(job: Job, duration: float, raised: BaseException | None = None) -> Outcome:
    """The outcome of a job the watchdog stopped (``job._stop``): cancelled,
    or an error saying it timed out (retried, in time expired, as any
    error). *raised* is what the job's code raised as it was stopped: its
    traceback says where it was."""
    stop = job._stop
    if stop is None or isinstance(stop, JobCancelled):
        return cancelled(job, duration)
    return failed(job, stop, duration, raised)


def cancelled(job: Job, duration: float = 0.0) -> Outcome:
    """The outcome of a job cancelled (``job._cancel``: when and why)."""
    outcome = Outcome(job, CANCEL, duration, job._stop)
    at, reason = job._cancel or ("", None)
    outcome.at, outcome.message = at, _text(reason or "", 500)
    return outcome


def failed(job: Job, exc: BaseException, duration: float,
           raised: BaseException | None = None) -> Outcome:
    """The outcome of a run that raised *exc*: an error and its retry, or
    the expiry when the job has no retries left. The backtrace is *raised*'s
    when given (the exception the job's code raised as it was stopped)."""
    error_count = job.error_count + 1
    expire = error_count > job.maximum_retry_count
    outcome = Outcome(job, EXPIRE if expire else ERROR, duration, exc)
    outcome.message = _text(_describe(exc), 500)
    trace = _backtrace(exc) if raised is None or raised is exc else (
        _describe(exc) + "\nstopped here:\n" + _backtrace(raised))
    outcome.backtrace = _text(trace, 10000)
    if not expire:
        default = default_retry_delay(error_count)
        try:
            delay = float(job.retry_delay(error_count))
        except Exception:
            log.exception("job %s: retry_delay raised; using the default", job.id)
            delay = default
        if not 0 <= delay <= MAX_RETRY_DELAY:
            log.warning("job %s: retry_delay returned %r; using %s", job.id, delay,
                        "the default" if math.isnan(delay) else "the nearest sane one")
            delay = default if math.isnan(delay) else min(max(delay, 0.0), MAX_RETRY_DELAY)
        outcome.delay = delay
    return outcome


def left_in_transaction(outcome: Outcome) -> Outcome:
    """The job returned with its session in a transaction (now rolled back):
    whatever it wrote there, its completion included, is gone, so the run
    counts as an error (retried, in time expired), never as a silent success
    that leaves the job to run again at once."""
    return failed(outcome.job, SessionLeftInTransaction(
        "the job left its session inside a transaction block (or with autocommit "
        "off): its uncommitted work was rolled back"), outcome.duration)


# -- saying so --------------------------------------------------------------------------

_EVENTS = {"retry_job": "retried", "expire_job": "expired"}


def _log(level: int, msg: str, args: tuple[Any, ...], extra: dict[str, Any]) -> None:
    """log.log(level, msg, *args, extra=extra), without logging's search of
    the stack for the caller's file and line (a line per job: it counts)."""
    if log.isEnabledFor(level):
        log.handle(log.makeRecord(log.name, level, __file__, 0, msg, args, None, None, extra))


def report(outcome: Outcome) -> None:
    """Log the outcome (one line) and call the hooks; once it is committed."""
    job, duration = outcome.job, outcome.duration
    if outcome.kind == CANCEL:
        why = f" reason={outcome.message}" if outcome.message else ""
        _log(logging.WARNING, "job %s: %s id=%s queue=%s duration=%.4fs outcome=%s%s",
             ("cancelled", job.job_class, job.id, job.queue, duration, "cancelled", why),
             {"que_event": "cancelled", "job_id": job.id, "job_class": job.job_class,
              "queue": job.queue, "duration": round(duration, 6), "outcome": "cancelled",
              "reason": outcome.message or None})
        call_hook("que_job_cancelled", job=job, reason=outcome.message or None,
                  duration=duration)
        return
    if outcome.kind in (ERROR, EXPIRE):
        name = "expired" if outcome.kind == EXPIRE else "errored"
        retry = "" if outcome.kind == EXPIRE else f" retry_in={outcome.delay:g}s"
        _log(logging.WARNING,
             "job %s: %s id=%s queue=%s duration=%.4fs outcome=%s error=%s%s",
             (name, job.job_class, job.id, job.queue, duration, name, outcome.message, retry),
             {"que_event": name, "job_id": job.id, "job_class": job.job_class,
              "queue": job.queue, "duration": round(duration, 6), "outcome": name,
              "error": outcome.message,
              "retry_in": None if outcome.kind == EXPIRE else outcome.delay})
        if outcome.kind == EXPIRE:
            call_hook("que_job_expired", job=job, error=outcome.error, duration=duration)
        else:
            call_hook("que_job_errored", job=job, error=outcome.error, duration=duration,
                      retry_in=outcome.delay)
        return
    # A job that asked to run again later, or expired itself, says so.
    event = _EVENTS.get(job._resolved_by or "", "worked")
    result = "succeeded" if event == "worked" else event
    _log(logging.INFO, "job %s: %s id=%s queue=%s duration=%.4fs outcome=%s",
         (event, job.job_class, job.id, job.queue, duration, result),
         {"que_event": event, "job_id": job.id, "job_class": job.job_class,
          "queue": job.queue, "duration": round(duration, 6), "outcome": result})
    call_hook("que_job_succeeded", job=job, duration=duration)


def report_unsaved(outcome: Outcome, why: BaseException) -> None:
    """The outcome could not be written (*why*): say so instead of claiming it."""
    job = outcome.job
    what = (f"failed ({outcome.message})" if outcome.kind in (ERROR, EXPIRE)
            else "was cancelled" if outcome.kind == CANCEL else "ran")
    log.warning("job %s: %s %s but its outcome could not be saved (%s); it is set aside",
                job.id, job.job_class, what, _describe(why))
