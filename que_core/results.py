"""Waiting for a job's result (classes with ``keep_result = True``).

A worker that writes the outcome of such a job (with que_core_next_jobs, in
the batch it writes every outcome with) stores what run() returned in
``que_jobs.que_core_result`` and NOTIFYs ``que_core_result_<id>``. A waiter
LISTENs on that channel, then reads the row, and reads it again each time a
notification comes: the notification wakes it, the row says what became of
the job. A change that notifies nobody (a job expired or deleted by hand or
by another program) is seen by a re-read every :data:`RECHECK` seconds. A job
that resolved itself in run() (``self.finish()``) shows finished before its
worker has written its result; while the worker still holds the job's lock
the row is read every :data:`SETTLING` seconds until the result is there.

The wait needs a session outside any transaction (notifications reach a
session only between transactions). With autocommit off, the driver opens a
transaction for the waiter's statements, which the waiter commits after each
of them. A session inside a transaction that has written anything is
refused, never committed; one inside a transaction that has only read is
committed (pass a connection of its own to wait on if that matters).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from que_core.errors import ConfigurationError, JobFailed, ResultUnavailable
from que_core.sql import q

__all__ = ["aresult", "result"]

#: Seconds between re-reads of the row while no notification comes.
RECHECK = 5.0


def channel(job_id: int) -> str:
    return f"que_core_result_{int(job_id)}"


#: Seconds between re-reads of a job that finished (it resolved itself in
#: run()) while its worker has not yet written its outcome and result.
SETTLING = 0.05


def _outcome(job_id: int, rows: list[Any]) -> tuple[bool | None, Any]:
    """(done, result) from the job_result row (done None: finished, but its
    worker has yet to write its result); raises for a job that will not finish."""
    if not rows:
        raise ResultUnavailable(
            f"job {job_id} is not in que_jobs: it never committed, or its row was deleted "
            "(a job whose class does not keep its result is deleted when it finishes, unless "
            "keep_finished; retention deletes old rows)", job_id)
    state, result, error, backtrace, locked = rows[0]
    if state == "finished":
        if result is None and locked:
            return None, None  # finish() in run(): the result comes with the outcome
        return True, None if result is None else json.loads(result)
    if state in ("expired", "cancelled"):
        why = f": {error}" if error else ""
        raise JobFailed(f"job {job_id} {state} without finishing{why}", job_id, state, error,
                        backtrace)
    return False, None


def _deadline(timeout: float | None) -> float | None:
    if timeout is None:
        return None
    if timeout < 0:
        raise ValueError(f"timeout {timeout!r} must not be negative")
    return time.monotonic() + timeout


def _left(deadline: float | None, job_id: int, timeout: float | None,
          done: bool | None) -> float:
    """How long to wait for a notification before reading the row again."""
    wait = SETTLING if done is None else RECHECK
    if deadline is None:
        return wait
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError(f"job {job_id} did not finish within {timeout} s")
    return min(left, wait)


_IN_TRANSACTION = (
    "the connection is inside a transaction that has written something: a result can "
    "only be waited for between transactions (notifications arrive there, and the job's "
    "own enqueue must have committed). Commit first, or pass another connection (conn=...)"
)


def _in_block(a: list[Any], b: list[Any]) -> bool:
    """From two result_probe rows in a row: inside a transaction block? Raises
    for one that has written something."""
    ((started, wrote),), ((again, _),) = a, b
    if started != again:
        return False  # autocommit: each statement its own transaction
    if wrote:
        raise ConfigurationError(_IN_TRANSACTION)
    return True


def result(job_id: int, *, conn: Any = None, timeout: float | None = None) -> Any:
    """Wait until job *job_id* finishes and return what its run() returned
    (None for a class that does not keep its result), as
    ``concurrent.futures.Future.result`` does.

    *conn* is a driver connection (or a que-core Connection) outside any
    transaction; default: the settings' connection provider (Django's, say).
    Raises :class:`TimeoutError` after *timeout* seconds (None: no limit),
    :class:`~que_core.errors.JobFailed` for a job that expired or was
    cancelled (with its last error), and
    :class:`~que_core.errors.ResultUnavailable` when the row is gone.
    """
    from que_core.config import settings
    from que_core.job import _connection

    deadline = _deadline(timeout)
    job_id = int(job_id)
    if conn is None and settings.connection_provider is None:
        raise ConfigurationError("result needs a connection: pass conn=<a driver connection "
                                 "of the job's database, outside a transaction>")
    c = _connection(conn)
    commit = _in_block(c.execute(q("result_probe")), c.execute(q("result_probe")))
    c.execute(f'LISTEN "{channel(job_id)}"')  # job_id is an int: safe to format

    def step(sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        rows = c.execute(sql, params)
        if commit:
            c.execute("COMMIT")
        return rows

    try:
        if commit:
            c.execute("COMMIT")
        while True:
            done, value = _outcome(job_id, step(q("job_result"), (job_id,)))
            if done:
                return value
            c.notifications(_left(deadline, job_id, timeout, done))
    finally:
        if not c.closed:
            step(f'UNLISTEN "{channel(job_id)}"')


async def aresult(job_id: int, *, conn: Any = None, timeout: float | None = None) -> Any:
    """:func:`result` from async code, on an async driver connection *conn*
    (psycopg's AsyncConnection, asyncpg, ...); the loop stays free meanwhile."""
    from que_core.job import _aconnection

    if conn is None:
        raise ConfigurationError("aresult needs a connection: pass conn=<an async driver "
                                 "connection of the job's database, outside a transaction>")
    deadline = _deadline(timeout)
    job_id = int(job_id)
    c = await _aconnection(conn)
    commit = _in_block(await c.execute(q("result_probe")), await c.execute(q("result_probe")))
    await c.execute(f'LISTEN "{channel(job_id)}"')

    async def step(sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        rows = await c.execute(sql, params)
        if commit:
            await c.execute("COMMIT")
        return rows

    try:
        if commit:
            await c.execute("COMMIT")
        while True:
            done, value = _outcome(job_id, await step(q("job_result"), (job_id,)))
            if done:
                return value
            await c.notifications(_left(deadline, job_id, timeout, done))
    finally:
        if not c.closed:
            await asyncio.shield(step(f'UNLISTEN "{channel(job_id)}"'))
