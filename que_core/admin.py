"""Inspecting and managing jobs: what ``que stats``, ``que jobs``, ``que clear``
and ``que drop`` do, usable from Python too.

Every function takes a que-core :class:`~que_core.connection.Connection`
(in autocommit mode, as adapters open them) or a raw driver connection.

A job's state is Que's ``que_determine_job_state`` (``expired``,
``finished``, ``errored``: error_count > 0, ``scheduled``: run_at in the
future, else ``ready``), except that an unfinished job whose advisory lock a
worker holds right now is ``running``, and a cancelled one (expired, with
``data.cancelled``: see :mod:`que_core.control`) is ``cancelled``.

Retrying, expiring and deleting skip running jobs: each job is locked for
the statement's transaction first, so a worker cannot take it while it
changes, and one that a worker holds is counted as skipped.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar, NamedTuple

from que_core.connection import Connection
from que_core.migrations import LATEST_VERSION, current_version, require_latest
from que_core.migrations import migrate as _migrate
from que_core.sql import q


def _connection(conn: Any) -> Connection:
    if isinstance(conn, Connection):
        return conn
    from que_core.plugins import wrap_connection

    return wrap_connection(conn)


def check_schema(conn: Any) -> int:
    """The schema version, when it is the one this que-core works with.

    Raises :class:`~que_core.errors.SchemaError` saying what to do otherwise.
    """
    c = _connection(conn)
    require_latest(c)
    return LATEST_VERSION


# -- stats ------------------------------------------------------------------


@dataclass
class JobCounts:
    """Jobs by state (:data:`STATES`), the counts of :class:`StatRow` and
    :class:`~que_core.control.QueueState`."""

    ready: int = 0
    scheduled: int = 0
    running: int = 0
    errored: int = 0
    expired: int = 0
    cancelled: int = 0
    finished: int = 0

    #: How many of the subclass's own fields come before the counts in to_dict.
    _counts_at: ClassVar[int] = 0

    def set_counts(self, counts: Iterable[Any]) -> None:
        """Set the counts from *counts*, in the order of :data:`STATES`."""
        for name, n in zip(STATES, counts, strict=False):
            setattr(self, name, int(n))

    def to_dict(self) -> dict[str, Any]:
        """The fields, the counts after the first ``_counts_at`` of the class's own
        (the order of the JSON of `que stats` and `que queues`)."""
        items = list(asdict(self).items())
        own = items[len(STATES):]
        return dict(own[:self._counts_at] + items[:len(STATES)] + own[self._counts_at:])


#: The job states, in the order que-core shows them.
STATES = tuple(f.name for f in fields(JobCounts))


@dataclass(kw_only=True)
class StatRow(JobCounts):
    """Job counts of one queue and job class."""

    queue: str
    job_class: str
    #: Seconds since the oldest ready job became ready (None: no ready job).
    oldest_ready_age: float | None = None

    _counts_at = 2


@dataclass
class Locker:
    """One worker process, from ``que_lockers``."""

    pid: int  # the backend pid of its locker session
    worker_count: int
    process_pid: int
    hostname: str
    listening: bool
    queues: list[str]
    worker_priorities: list[int]


@dataclass
class Stats:
    rows: list[StatRow] = field(default_factory=list)
    lockers: list[Locker] = field(default_factory=list)

    def totals(self) -> StatRow:
        total = StatRow(queue="*", job_class="*")
        for row in self.rows:
            for name in STATES:
                setattr(total, name, getattr(total, name) + getattr(row, name))
            if row.oldest_ready_age is not None and (
                total.oldest_ready_age is None or row.oldest_ready_age > total.oldest_ready_age
            ):
                total.oldest_ready_age = row.oldest_ready_age
        return total

    def to_dict(self) -> dict[str, Any]:
        return {
            "jobs": [r.to_dict() for r in self.rows],
            "totals": {k: v for k, v in self.totals().to_dict().items()
                       if k not in ("queue", "job_class")},
            "workers": {
                "processes": len(self.lockers),
                "threads": sum(lk.worker_count for lk in self.lockers),
                "lockers": [asdict(lk) for lk in self.lockers],
            },
        }


def stats(conn: Any) -> Stats:
    """Job counts per queue and job class, and the worker processes."""
    c = _connection(conn)
    rows = []
    for queue, job_class, *counts in c.execute(q("admin_stats")):
        row = StatRow(queue=str(queue), job_class=str(job_class))
        row.set_counts(counts)
        age = counts[len(STATES)]
        row.oldest_ready_age = None if age is None else max(0.0, float(age))
        rows.append(row)
    return Stats(rows, lockers(c))


#: How far :func:`queue_overview` counts each kind of job before it stops.
OVERVIEW_CAP = 5_000


@dataclass
class QueueCounts:
    """One queue's jobs by state (finished ones not counted)."""

    queue: str
    #: None: not known (more retries were due, or later, than were counted).
    ready: int | None = 0
    scheduled: int | None = 0
    running: int = 0
    errored: int = 0
    #: Expired jobs, cancelled ones not counted (those are ``cancelled``).
    expired: int = 0
    cancelled: int = 0
    #: Since when (ISO 8601, UTC) the queue is paused (None: it is not), and why.
    paused_at: str | None = None
    paused_reason: str | None = None
    #: Seconds since the oldest job due now (errored retries included) that
    #: no worker holds became due (None: there is none).
    oldest_due_age: float | None = None
    #: The counts that are only lower bounds ("at least"): counting stopped at
    #: the cap.
    capped: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def queue_overview(conn: Any, cap: int | None = None) -> list[QueueCounts]:
    """Each queue's counts (the states of :func:`list_jobs`), read from the
    indexes that hold only unfinished, retrying or expired jobs, each count
    stopping at about *cap* (default :data:`OVERVIEW_CAP`; see
    :attr:`QueueCounts.capped`): quick however
    big the table is, unlike :func:`stats`, which walks every job. Queues the
    live workers take, and paused queues, are listed even when empty."""
    out = []
    limit = int(OVERVIEW_CAP if cap is None else cap) + 1
    for (queue, due, due_capped, later, later_capped, r_due, r_later, ended, cancelled,
         running, running_errored, running_later, age, paused_at, paused_reason
         ) in _connection(conn).execute(q("admin_queue_overview"), (limit,) * 6):
        due, later, r_due, r_later = int(due), int(later), int(r_due), int(r_later)
        k_ready = int(running) - int(running_errored) - int(running_later)
        row = QueueCounts(str(queue), running=int(running),
                          expired=int(ended) - int(cancelled), cancelled=int(cancelled),
                          paused_at=None if paused_at is None else str(paused_at),
                          paused_reason=None if paused_reason is None else str(paused_reason),
                          oldest_due_age=None if age is None else max(0.0, float(age)))
        row.ready = max(0, due - r_due - k_ready)
        row.scheduled = max(0, later - r_later - int(running_later))
        row.errored = max(0, r_due + r_later - int(running_errored))
        # ready and scheduled are the waiting jobs less the retries among
        # them: unknown when the retries were too many to count.
        if r_due == limit:
            row.ready = None
        elif due_capped:
            row.capped.append("ready")
        if r_later == limit:
            row.scheduled = None
        elif later_capped:
            row.capped.append("scheduled")
        if limit in (r_due, r_later):
            row.capped.append("errored")
        if int(ended) == limit:  # expired and cancelled are counted together
            row.capped.extend(("expired", "cancelled"))
        out.append(row)
    return out


def lockers(conn: Any) -> list[Locker]:
    """The worker processes registered now (``que_lockers``)."""
    return [
        Locker(int(pid), int(count), int(ppid or 0), str(host or ""), bool(listening),
               json.loads(queues), json.loads(priorities))
        for pid, count, ppid, host, listening, queues, priorities in _connection(conn).execute(
            q("admin_lockers")
        )
    ]


@dataclass
class RunningJob:
    """A job some session holds now, and the worker holding it."""

    id: int
    queue: str
    job_class: str
    priority: int
    run_at: str
    error_count: int
    #: The backend pid of the session holding it.
    backend_pid: int
    #: The worker process (from que_lockers), when it is known.
    hostname: str | None
    process_pid: int | None
    #: Seconds since that session last began or ended a statement.
    idle_for: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def running_jobs(conn: Any, limit: int = 500) -> list[RunningJob]:
    """The jobs running now (at most *limit*, by id), each with its worker."""
    return [
        RunningJob(int(i), str(queue), str(cls), int(prio), str(run_at), int(errors), int(pid),
                   None if host is None else str(host), None if ppid is None else int(ppid),
                   None if idle is None else float(idle))
        for i, queue, cls, prio, run_at, errors, pid, host, ppid, idle in _connection(
            conn
        ).execute(q("admin_running"), (int(limit),))
    ]


def throughput(conn: Any, queue: str | None = None) -> list[dict[str, Any]]:
    """The last hour's runs per minute (of *queue*, or of all), from the
    tallies workers write (:mod:`que_core.throughput`): minute (epoch s),
    done, failed, latency_mean and latency_max (s; None without runs)."""
    rows = _connection(conn).execute(q("throughput_recent"), (queue, queue))
    return [
        {"minute": int(m), "done": int(d), "failed": int(f),
         "latency_mean": None if mean is None else float(mean),
         "latency_max": None if most is None else float(most)}
        for m, d, f, mean, most in rows
    ]


# -- jobs -------------------------------------------------------------------


@dataclass
class JobFilter:
    """Which jobs a list or a bulk change applies to; empty fields match all."""

    ids: Sequence[int] = ()
    queues: Sequence[str] = ()
    classes: Sequence[str] = ()
    states: Sequence[str] = ()
    tag: str | None = None
    #: JSON values the job's args / kwargs must contain (jsonb ``@>``).
    args: Any = None
    kwargs: Any = None
    #: Text the last error message contains (case-insensitive).
    error: str | None = None

    def __post_init__(self) -> None:
        for state in self.states:
            if state not in STATES:
                raise ValueError(f"unknown job state {state!r} (one of {', '.join(STATES)})")

    @property
    def empty(self) -> bool:
        return self.to_json() == "{}"

    def to_json(self) -> str:
        p: dict[str, Any] = {}
        if self.ids:
            p["ids"] = [int(i) for i in self.ids]
        if self.queues:
            p["queues"] = list(self.queues)
        if self.classes:
            p["classes"] = list(self.classes)
        if self.states:
            p["states"] = list(self.states)
        if self.tag is not None:
            p["tag"] = self.tag
        if self.args is not None:
            p["args"] = self.args
        if self.kwargs is not None:
            p["kwargs"] = self.kwargs
        if self.error:
            p["error"] = self.error
        return json.dumps(p, ensure_ascii=False)


def _load(text: str | None) -> Any:
    """JSON from a row; left as its text when nested too deeply for Python
    (another program may have written it)."""
    if text is None:
        return None
    try:
        return json.loads(text)
    except RecursionError:
        return text


#: The keys of a job's dict, in the order the CLI and the dashboard show them.
JOB_KEYS = ("id", "queue", "job_class", "state", "priority", "run_at", "error_count",
            "last_error_message", "last_error_backtrace", "finished_at", "expired_at", "args",
            "kwargs", "tags", "data", "stored_job_class", "job_schema_version", "result")
#: How a column's value becomes the dict's (the others stay as they are).
_JOB_VALUES: dict[str, Callable[[Any], Any]] = {
    "id": int, "priority": int, "error_count": int, "job_schema_version": int,
    "args": _load, "kwargs": _load, "result": _load,
}
#: The columns of admin_list_jobs ({{admin_job_columns}}) and admin_get_job.
_LISTED = ("id", "queue", "job_class", "state", "priority", "run_at", "error_count",
           "last_error_message", "finished_at", "expired_at", "args", "kwargs", "data",
           "stored_job_class", "job_schema_version")
_SHOWN = ("id", "queue", "job_class", "priority", "run_at", "error_count",
          "last_error_message", "last_error_backtrace", "finished_at", "expired_at", "args",
          "kwargs", "data", "job_schema_version", "state", "result")


def _job(columns: Sequence[str], row: Sequence[Any]) -> dict[str, Any]:
    """*row* (its values named by *columns*) as a job's dict: its keys in the
    order of JOB_KEYS, JSON loaded, the tags taken out of its data."""
    values = dict(zip(columns, row, strict=True))
    data = _load(values["data"]) or {}
    values.update(data=data, tags=data.get("tags") or [])
    return {k: _JOB_VALUES.get(k, _same)(values[k]) for k in JOB_KEYS if k in values}


def _same(value: Any) -> Any:
    return value


def list_jobs(conn: Any, where: JobFilter | None = None, limit: int = 50) -> list[dict[str, Any]]:
    """The jobs matching *where*, by id, at most *limit* of them."""
    rows = _connection(conn).execute(
        q("admin_list_jobs"), ((where or JobFilter()).to_json(), int(limit))
    )
    return [_job(_LISTED, row) for row in rows]


#: How many jobs (by id) one page of :func:`page_jobs` looks through at most.
PAGE_WINDOW = 50_000


@dataclass
class JobPage:
    jobs: list[dict[str, Any]]
    #: Where the next page starts (its ``below``); None: this was the last.
    next_below: int | None
    #: How many jobs, newest first from ``below``, this page looked through
    #: (fewer than :data:`PAGE_WINDOW` when the page filled up first).
    searched: int


def page_jobs(conn: Any, where: JobFilter | None = None, limit: int = 50,
              below: int | None = None, window: int = PAGE_WINDOW) -> JobPage:
    """A page of the jobs matching *where*, newest first: at most *limit* of
    those with ids below *below*, among the next *window* jobs by id (keyset
    paging; a filter that matches few jobs gives short pages rather than a
    walk of the whole table: go on from :attr:`JobPage.next_below`)."""
    c = _connection(conn)
    start = 2**63 - 1 if below is None else int(below)
    rows = c.execute(q("admin_page_jobs"),
                     ((where or JobFilter()).to_json(), start, int(window), int(limit) + 1))
    found = [_job(_LISTED, row) for row in rows[:limit]]
    if len(rows) > limit:
        return JobPage(found, found[-1]["id"], window)
    boundary = c.execute(q("admin_page_boundary"), (start, int(window) - 1))
    return JobPage(found, int(boundary[0][0]) if boundary else None, window)


def get_job(conn: Any, job_id: int) -> dict[str, Any] | None:
    """Every column of job *job_id* and its state, or None when there is no such job;
    ``result`` is what run() returned, for a class with keep_result (None: none kept)."""
    c = _connection(conn)
    rows = c.execute(q("admin_get_job"), (int(job_id),))
    if not rows:
        return None
    return _job(_SHOWN, rows[0])


def count_jobs(conn: Any, where: JobFilter) -> tuple[int, int]:
    """How many jobs match *where*, and how many of them are running."""
    ((matched, running),) = _connection(conn).execute(q("admin_count_jobs"), (where.to_json(),))
    return int(matched), int(running)


class ActionWords(NamedTuple):
    """How `que jobs` and `que web` speak of a bulk action."""

    #: Its past tense, in the summary.
    done: str
    #: Its confirmation question; ``{what}`` is the jobs it will change.
    question: str


ACTION_WORDS = {
    "retry": ActionWords("retried", "Run {what} now"),
    "expire": ActionWords("expired", "Expire {what}"),
    "delete": ActionWords("deleted", "Delete {what}"),
    "clear": ActionWords("deleted", "Delete {what}"),
}


@dataclass
class BulkResult:
    action: str
    #: Jobs that matched the filter.
    matched: int
    #: Jobs changed (or deleted).
    changed: int
    #: Matching jobs left alone because a worker holds them.
    skipped_running: int

    def summary(self) -> str:
        """What was done, in a sentence (as `que jobs` and `que web` say it)."""
        done = ACTION_WORDS[self.action].done
        line = f"{done} {self.changed} job{'s' if self.changed != 1 else ''}"
        notes = []
        if self.skipped_running:
            notes.append(f"{self.skipped_running} skipped: running now")
        other = self.matched - self.changed - self.skipped_running
        if other:
            notes.append(f"{other} unchanged: " + ("already finished" if self.action == "retry"
                                                   else "already finished or expired"))
        return line + (f" ({'; '.join(notes)})" if notes else "")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _bulk(conn: Any, action: str, query: str, where: JobFilter) -> BulkResult:
    c = _connection(conn)
    with c.transaction():
        # Nothing listens to Que's que_state channel: spare a NOTIFY per row.
        c.execute(q("set_skip_notify"), ("true",))
        ((matched, changed, running),) = c.execute(q(query), (where.to_json(),))
    return BulkResult(action, int(matched), int(changed), int(running))


def retry_jobs(conn: Any, where: JobFilter) -> BulkResult:
    """Make the matching jobs run now (expired ones too; finished ones stay)."""
    return _bulk(conn, "retry", "admin_retry_jobs", where)


def expire_jobs(conn: Any, where: JobFilter) -> BulkResult:
    """Expire the matching unfinished jobs: they will not run again."""
    return _bulk(conn, "expire", "admin_expire_jobs", where)


def delete_jobs(conn: Any, where: JobFilter) -> BulkResult:
    """Delete the matching jobs."""
    return _bulk(conn, "delete", "admin_delete_jobs", where)


def clear_queues(conn: Any, queues: Sequence[str]) -> BulkResult:
    """Delete every job of *queues* (running ones excepted)."""
    if not queues:
        raise ValueError("name at least one queue to clear")
    result = delete_jobs(conn, JobFilter(queues=list(queues)))
    result.action = "clear"
    return result


def drop_schema(conn: Any) -> int:
    """Remove the que schema (tables, functions, triggers and every job):
    migrate down to version 0. Returns the version it was at."""
    c = _connection(conn)
    before = current_version(c)
    if before:
        _migrate(c, 0)
    return before
