"""Job control from any process: cancel jobs, pause and resume queues, prune
kept jobs. What ``que jobs cancel``, ``que queues`` and ``que jobs prune``
do, usable from Python (``que_core.cancel``, ``que_core.acancel``).

Every function takes the caller's connection: a raw driver connection or a
que-core :class:`~que_core.connection.Connection` (async ones for
:func:`acancel`). Their changes join its transaction, as ``enqueue`` does;
in autocommit mode each takes effect at once.

Cancelling (``que_core_cancel``, migrations/7.6): a waiting job is marked
cancelled at once, and never runs. A job a worker holds (running it, or
about to) gets a cancel request, and every que-core worker is told by
NOTIFY on ``que_core_control`` (each also polls the requests every second):
its worker stops it (see :mod:`que_core.watchdog`) and records it
cancelled, unless it ended first, in which case its end stands. A cancelled
job is an expired one (Ruby Que reads it as expired, and never runs it)
whose ``data`` has ``{"cancelled": {"at": ..., "reason": ...}}``.

Pausing: a paused queue gives que-core workers no new jobs (their claims
skip it) until it is resumed; running jobs go on. Ruby Que's lockers know
nothing of it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from que_core import retention, validation
from que_core.admin import JobCounts, JobFilter
from que_core.connection import AsyncConnection, Connection
from que_core.errors import ConfigurationError
from que_core.sql import q

#: What a cancel did, by result (see que_core_cancel).
RESULTS = {
    "cancelled": "cancelled job {id}: it was waiting and will never run",
    "stopped": "cancelled job {id}: it was running, and its worker stopped it",
    "stopping": "cancelled job {id}: it is running, and its worker was told to stop it",
    "already_stopping": "job {id} is being cancelled already: its worker was told to stop it",
    "already_cancelled": "job {id} was cancelled already: nothing to do",
    "finished": "job {id} has finished: nothing to cancel",
    "ended": "job {id} ended before it could be stopped: not cancelled",
    "expired": "job {id} has expired: nothing to cancel",
    "missing": "no job {id} (it finished and was deleted, or never existed): nothing to cancel",
}
#: The results that cancelled something (the others are no-ops).
DONE = frozenset({"cancelled", "stopped", "stopping"})


@dataclass
class CancelResult:
    """What cancelling one job did: *result* is a key of :data:`RESULTS`."""

    id: int
    result: str

    @property
    def message(self) -> str:
        return RESULTS[self.result].format(id=self.id)

    @property
    def changed(self) -> bool:
        return self.result in DONE

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "message": self.message}


def _connection(conn: Any) -> Connection:
    if isinstance(conn, Connection):
        return conn
    if conn is None:
        raise ConfigurationError("pass conn=<your driver connection>")
    from que_core.plugins import wrap_connection

    return wrap_connection(conn)


def _ids(job_ids: Sequence[int]) -> list[int]:
    out = []
    for i in job_ids:
        if isinstance(i, bool) or not isinstance(i, int):
            raise ConfigurationError(f"a job id must be an integer, not {i!r}")
        out.append(i)
    return out


def _reason(reason: str | None) -> str | None:
    if reason is None:
        return None
    return validation.check_text(reason, "cancel reason", 500)


def cancel_jobs(job_ids: Sequence[int], *, conn: Any, reason: str | None = None,
                wait: float = 0.0) -> list[CancelResult]:
    """Cancel the jobs *job_ids*; one result per distinct id, in id order.
    With *wait* (seconds; *conn* in autocommit mode), wait that long for
    the running ones to end: each becomes ``stopped``, or ``ended`` when it
    ended on its own first."""
    c = _connection(conn)
    ids = _ids(job_ids)
    results = [CancelResult(int(i), str(r))
               for i, r in c.execute(q("cancel_jobs"), (ids, _reason(reason)))]
    if wait > 0:
        _wait_for_ends(c, [r for r in results if r.result == "stopping"], wait)
    return results


def _wait_for_ends(c: Connection, running: list[CancelResult], wait: float) -> None:
    give_up = time.monotonic() + wait
    while running and time.monotonic() < give_up:
        time.sleep(0.05)
        states = {int(i): state for i, state in c.execute(q("cancel_ends"),
                                                          ([r.id for r in running],))}
        for r in running:
            state = states.get(r.id)
            if state == "cancelled":
                r.result = "stopped"
            elif state != "running":  # gone, finished, expired, or waiting for a retry
                r.result = "ended"
        running = [r for r in running if r.result == "stopping"]


def cancel(job_id: int, *, conn: Any, reason: str | None = None) -> CancelResult:
    """Cancel job *job_id* (see the module's docstring), in *conn*'s
    transaction. Cancelling a job that has ended, or was cancelled already,
    changes nothing and says so (:attr:`CancelResult.message`)."""
    return cancel_jobs([job_id], conn=conn, reason=reason)[0]


@dataclass
class BulkCancel:
    """What cancelling every job of a filter did: how many jobs had each
    result (keys of :data:`RESULTS`)."""

    counts: dict[str, int]

    @property
    def matched(self) -> int:
        return sum(self.counts.values())

    @property
    def changed(self) -> int:
        return sum(n for r, n in self.counts.items() if r in DONE)

    def summary(self) -> str:
        """What was done, in a sentence (as ``que web`` says it)."""
        n = self.changed
        notes = []
        stopping = self.counts.get("stopping", 0)
        if stopping:
            who = "its worker was told to stop it" if stopping == 1 else (
                "their workers were told to stop them")
            notes.append(f"{stopping} running: {who}")
        told = self.counts.get("already_stopping", 0)
        if told:
            notes.append(f"{told} being cancelled already")
        other = self.matched - n - told
        if other:
            notes.append(f"{other} unchanged: already ended or cancelled")
        line = f"cancelled {n} job{'s' if n != 1 else ''}"
        return line + (f" ({'; '.join(notes)})" if notes else "")


def cancel_matching(where: JobFilter, *, conn: Any, reason: str | None = None) -> BulkCancel:
    """Cancel every job matching *where*, each as :func:`cancel_jobs` does
    (running ones get a cancel request), in *conn*'s transaction."""
    rows = _connection(conn).execute(q("admin_cancel_jobs"), (where.to_json(), _reason(reason)))
    return BulkCancel({str(r): int(n) for r, n in rows})


def cancel_requested(job_id: int, *, conn: Any) -> tuple[str, str | None] | None:
    """(since when, why) running job *job_id* has a cancel request its
    worker has yet to act on; None when it has none."""
    rows = _connection(conn).execute(q("cancel_requests"), (_ids([job_id]),))
    return (str(rows[0][1]), rows[0][2]) if rows else None


async def acancel(job_id: int, *, conn: Any, reason: str | None = None) -> CancelResult:
    """:func:`cancel` on an async connection."""
    if isinstance(conn, AsyncConnection):
        c = conn
    else:
        from que_core.plugins import awrap_connection

        c = await awrap_connection(conn)
    rows = await c.execute(q("cancel_jobs"), (_ids([job_id]), _reason(reason)))
    ((i, result),) = rows
    return CancelResult(int(i), str(result))


# -- queues ---------------------------------------------------------------------------


@dataclass(kw_only=True)
class QueueState(JobCounts):
    """One queue: whether it is paused, and its jobs by state."""

    queue: str
    paused: bool
    paused_at: str | None = None
    reason: str | None = None

    _counts_at = 4


def pause(name: str, *, conn: Any, reason: str | None = None) -> bool:
    """Pause queue *name*: que-core workers start none of its jobs until
    :func:`resume`. False when it was paused already."""
    name = validation.check_queue(name)
    reason = None if reason is None else validation.check_text(reason, "pause reason", 500)
    return bool(_connection(conn).execute(q("pause_queue"), (name, reason)))


def resume(name: str, *, conn: Any) -> bool:
    """Resume queue *name*, telling every que-core worker. False when it was
    not paused."""
    name = validation.check_queue(name)
    return bool(_connection(conn).execute(q("resume_queue"), (name,)))


def paused_since(name: str, *, conn: Any) -> tuple[str, str | None] | None:
    """(since when, why) queue *name* is paused; None when it is not."""
    rows = _connection(conn).execute(q("paused_since"), (validation.check_queue(name),))
    return (str(rows[0][0]), rows[0][1]) if rows else None


def list_queues(*, conn: Any) -> list[QueueState]:
    """Every queue that has jobs or is paused, by name."""
    out = []
    for queue, paused_at, reason, *counts in _connection(conn).execute(q("admin_queues")):
        state = QueueState(queue=str(queue), paused=paused_at is not None, paused_at=paused_at,
                           reason=reason)
        state.set_counts(counts)
        out.append(state)
    return out


# -- retention on demand --------------------------------------------------------------


def prune(*, conn: Any, older_than: Any, finished: bool = True,
          expired: bool = True) -> retention.Pruned:
    """Delete the kept jobs (finished; expired and cancelled) that ended
    more than *older_than* ago (seconds, or an age such as ``"7d"``), in
    small batches. *conn* must be in autocommit mode (each batch commits)."""
    age = retention.parse_age(older_than)
    if age is None:
        raise ConfigurationError("prune needs an age (such as 7d), not never")
    policy = retention.Retention(age if finished else None, age if expired else None)
    return retention.prune(_connection(conn), policy)
