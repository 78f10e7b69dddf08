"""Helpers for testing code that enqueues que-core jobs.

::

    from que_core.testing import assert_enqueued, drain, inline

    def test_signup(que_database):            # fixture of the pytest plugin
        signup("a@example.com", conn=que_database.conn)
        assert_enqueued(SendWelcome, args=["a@example.com"], queue="mail")
        ran = drain()                          # works them here, now
        assert [j.job_class for j in ran] == [SendWelcome.job_name]

    def test_inline():
        with inline():                         # enqueue runs the job at once
            signup("b@example.com", conn=...)

Every helper takes ``conn=`` (a que-core Connection or any connection
``enqueue`` accepts). Without it they use the connection set with
:func:`use_connection` (the ``que_database`` fixture sets its own), else
``que_core.settings.connection_provider`` (Django's connection, with the
Django app installed), so in a Django test they see the test's transaction.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from que_core import blocking, execute
from que_core.claims import AsyncClaims, Claims
from que_core.config import RunMode, run_mode, settings
from que_core.connection import Connection, Notification, Row
from que_core.errors import ConfigurationError
from que_core.job import Job, is_async, registry
from que_core.plugins import awrap_connection, wrap_connection
from que_core.sql import q

__all__ = [
    "adrain",
    "assert_enqueued",
    "assert_not_enqueued",
    "drain",
    "enqueued_jobs",
    "inline",
    "use_connection",
]

_default: list[Any] = []  # stack of connections set by use_connection


@contextmanager
def inline() -> Iterator[None]:
    """Inside the block, ``enqueue`` runs each job at once in the caller's
    thread (nothing is inserted; a job's error propagates); an ``async def``
    job too, on an event loop of its own (``aenqueue`` awaits it on the
    caller's)."""
    with run_mode(RunMode.INLINE):
        yield


@contextmanager
def use_connection(conn: Any) -> Iterator[None]:
    """The connection the helpers use when given none, inside the block."""
    _default.append(conn)
    try:
        yield
    finally:
        _default.remove(conn)


def _connection(conn: Any) -> Connection:
    if conn is None:
        if _default:
            conn = _default[-1]
        elif settings.connection_provider is not None:
            conn = settings.connection_provider()
        else:
            raise ConfigurationError(
                "no connection: pass conn=..., use the que_database fixture, or "
                "wrap the test in que_core.testing.use_connection(conn)"
            )
    return wrap_connection(conn)


def _name(job_class: type[Job] | str | None) -> str | None:
    if job_class is None or isinstance(job_class, str):
        return job_class
    return job_class.job_name


def _normalize(value: Any) -> Any:
    """*value* as it comes back from the database (tuples become lists)."""
    return json.loads(json.dumps(value))


def enqueued_jobs(
    job_class: type[Job] | str | None = None,
    *,
    conn: Any = None,
    queue: str | None = None,
) -> list[Job]:
    """The jobs waiting in ``que_jobs`` (neither finished nor expired), of
    *job_class* and in *queue* if given, in the order workers take them."""
    name = _name(job_class)
    c = _connection(conn)
    jobs = [execute.build(row, None) for row in c.execute(q("waiting_jobs"))]
    return [
        j for j in jobs
        if (name is None or j.job_class == name) and (queue is None or j.queue == queue)
    ]


def _describe(jobs: Sequence[Job]) -> str:
    if not jobs:
        return "none"
    return "; ".join(
        f"{j.job_class}(args={j.args!r}, kwargs={j.kwargs!r}, queue={j.queue!r}, "
        f"priority={j.priority})"
        for j in jobs
    )


def _matches(job: Job, args: Any, kwargs: Any, priority: int | None, tags: Any) -> bool:
    return (
        (args is None or job.args == _normalize(list(args)))
        and (kwargs is None or job.kwargs == _normalize(dict(kwargs)))
        and (priority is None or job.priority == priority)
        and (tags is None or sorted(job.tags) == sorted(tags))
    )


def assert_enqueued(
    job_class: type[Job] | str,
    *,
    args: Sequence[Any] | None = None,
    kwargs: dict[str, Any] | None = None,
    queue: str | None = None,
    priority: int | None = None,
    tags: Sequence[str] | None = None,
    count: int | None = None,
    conn: Any = None,
) -> list[Job]:
    """Assert that waiting jobs of *job_class* match every criterion given
    (at least one, or exactly *count*). Returns the matching jobs."""
    candidates = enqueued_jobs(job_class, conn=conn, queue=queue)
    found = [j for j in candidates if _matches(j, args, kwargs, priority, tags)]
    wanted = f"exactly {count}" if count is not None else "a"
    if (count is None and not found) or (count is not None and len(found) != count):
        criteria = ", ".join(
            f"{k}={v!r}"
            for k, v in (("args", args), ("kwargs", kwargs), ("queue", queue),
                         ("priority", priority), ("tags", tags))
            if v is not None
        )
        raise AssertionError(
            f"expected {wanted} {_name(job_class)} job"
            f"{' with ' + criteria if criteria else ''}; found {len(found)}. "
            f"Waiting {_name(job_class)} jobs: {_describe(candidates)}"
        )
    return found


def assert_not_enqueued(
    job_class: type[Job] | str,
    *,
    args: Sequence[Any] | None = None,
    kwargs: dict[str, Any] | None = None,
    queue: str | None = None,
    conn: Any = None,
) -> None:
    """Assert that no waiting job of *job_class* matches the criteria given."""
    found = [
        j for j in enqueued_jobs(job_class, conn=conn, queue=queue)
        if _matches(j, args, kwargs, None, None)
    ]
    if found:
        raise AssertionError(f"expected no such {_name(job_class)} job; found {_describe(found)}")


class _Unowned:
    """The caller's Connection, which the runner must never close."""

    def __init__(self, inner: Connection) -> None:
        self._inner = inner
        self.raw = inner.raw

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return self._inner.execute(sql, params)

    def transaction(self) -> Any:
        return self._inner.transaction()

    def notifications(self, timeout: float) -> list[Notification]:
        return self._inner.notifications(timeout)

    def copy_in(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self._inner.copy_in(sql, rows)

    def reset(self) -> bool:
        return False  # the caller's transaction is the caller's

    def close(self) -> None:
        pass

    @property
    def closed(self) -> bool:
        return self._inner.closed


def drain(
    conn: Any = None,
    *,
    queues: Sequence[str] | None = None,
    raise_errors: bool = True,
    max_jobs: int = 10_000,
) -> list[Job]:
    """Work every ready job (of *queues*, default all) in this process and
    thread, on *conn*, as a worker would: in priority order, jobs they
    enqueue included, each at most once per call (a retry waits for the
    next call). Returns the jobs that ran, in order.

    A job's error is recorded as a worker records it (retry or expiry); with
    *raise_errors* (the default) draining stops and the error is raised.
    The jobs are locked on *conn*'s session, which must be at READ
    COMMITTED (PostgreSQL's default) for a job another session just
    resolved not to run again.
    """
    c: Connection = _Unowned(_connection(conn))
    claims = Claims(c, queues)
    ran: list[Job] = []
    tried: list[int] = []
    try:
        while len(ran) < max_jobs:
            rows = claims.next(None, 1, exclude=tried)
            if not rows:
                break
            tried.append(rows[0][0])
            job = execute.build(rows[0], c)
            outcome = execute.run(job)
            claims.add(outcome)
            ran.append(job)
            if raise_errors and outcome.error is not None:
                claims.flush()
                raise outcome.error
    finally:
        claims.flush()
    return ran


async def adrain(
    conn: Any,
    *,
    queues: Sequence[str] | None = None,
    raise_errors: bool = True,
    max_jobs: int = 10_000,
) -> list[Job]:
    """:func:`drain` from async code, on the async connection *conn* (any
    that ``aenqueue`` takes): ``async def`` jobs are awaited with
    ``self.db`` the async session on *conn*, sync jobs run in a thread,
    their statements sent through this loop to *conn*, as ``aenqueue`` runs
    them inline."""
    c = await awrap_connection(conn)
    loop = asyncio.get_running_loop()
    claims = AsyncClaims(c, queues)
    ran: list[Job] = []
    tried: list[int] = []
    try:
        while len(ran) < max_jobs:
            rows = await claims.anext(None, 1, exclude=tried)
            if not rows:
                break
            tried.append(rows[0][0])
            cls = registry.get(rows[0][3])
            if cls is not None and is_async(cls):
                job = execute.build(rows[0], c, for_async=True)
                outcome = await execute.arun(job)
            else:
                job = execute.build(rows[0], blocking.on_loop(c, loop))
                outcome = await asyncio.to_thread(execute.run, job)
            claims.add(outcome)
            ran.append(job)
            if raise_errors and outcome.error is not None:
                await claims.aflush()
                raise outcome.error
    finally:
        await claims.aflush()
    return ran
