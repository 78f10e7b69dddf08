"""Periodic jobs: cron schedules that every ``que work`` process enqueues.

Each worker process runs a :class:`Scheduler` thread. At each tick of each
schedule (by the database's clock, so a worker's own clock does not count),
every scheduler tries to insert the tick's row into ``que_core_ticks``
(primary key: schedule and tick) and the tick's job, in one statement
(``enqueue_tick``). The first one inserts both; the others find the row and
insert nothing. A worker killed mid-statement leaves neither, and the others
insert them. So each tick is enqueued once, by whichever workers are up.

Which ticks a scheduler tries: every tick from the moment it started (by the
database clock) on, at most :data:`LATE` seconds late (a process that was
stopped or starved longer than that has missed them). A tick that came while
no worker ran is missed, unless the schedule has ``catch_up`` = N: then a
scheduler starting enqueues the latest N missed ticks (those after the latest
tick recorded for it).

Cron expressions are parsed by croniter: five fields, or six with the seconds
first (``*/10 * * * * *``: every ten seconds). Ticks are in UTC.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from croniter import CroniterError, croniter

from que_core import validation
from que_core.backoff import retry_connect
from que_core.connection import Connection
from que_core.errors import ConfigurationError, DatabaseError, InvalidJob
from que_core.sql import q

if TYPE_CHECKING:
    from que_core.job import Job

log = logging.getLogger("que_core.schedules")

#: The latest a running scheduler enqueues a tick, in seconds after it.
LATE = 60.0
#: Ticks a scheduler tries at most per schedule per round (a per-second
#: schedule after a stall of LATE seconds: LATE of them).
MOST_PER_ROUND = 1000
#: The longest a scheduler sleeps between rounds: it reads the database's
#: clock again at least this often.
LONGEST_SLEEP = 30.0
#: Tick records older than this are pruned (each schedule's latest is kept).
KEEP_TICKS = timedelta(hours=1)

_KEYS = {"job", "cron", "args", "kwargs", "catch_up", "queue", "priority"}


def parse_cron(expr: Any, where: str) -> str:
    """*expr* checked as a cron expression of five fields, or six with the
    seconds first; ConfigurationError naming *where* and the value if not."""
    if not isinstance(expr, str):
        raise ConfigurationError(f"{where}: cron expression {expr!r} is not a string")
    fields = len(expr.split())
    if fields not in (5, 6):
        raise ConfigurationError(
            f"{where}: cron expression {expr!r} has {fields} fields; it needs 5 "
            "(minute hour day month weekday) or 6 (second first)")
    try:
        croniter(expr, datetime(2000, 1, 1, tzinfo=timezone.utc),
                 second_at_beginning=fields == 6)
    except (CroniterError, ValueError, KeyError) as exc:
        raise ConfigurationError(f"{where}: bad cron expression {expr!r}: {exc}") from None
    return expr


@dataclass(frozen=True)
class Schedule:
    """One periodic job: its *name* (the key of its ticks), cron expression,
    the job class's stored name and the job's arguments."""

    name: str
    cron: str
    job_class: str
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    #: Missed ticks enqueued when a scheduler starts: the latest this many.
    catch_up: int = 0
    queue: str | None = None
    priority: int | None = None

    def __post_init__(self) -> None:
        where = f"schedule {self.name!r}"
        parse_cron(self.cron, where)
        c = self.catch_up
        if isinstance(c, bool) or not isinstance(c, int) or not 0 <= c <= MOST_PER_ROUND:
            raise ConfigurationError(f"{where}: catch_up {c!r} must be an integer from 0 to "
                                     f"{MOST_PER_ROUND}")
        validation.check_text(self.name, "schedule name", 200)
        try:
            validation.check_args(tuple(self.args), dict(self.kwargs))
        except InvalidJob as exc:
            raise ConfigurationError(f"{where}: {exc}") from None

    @classmethod
    def of_class(cls, job_class: type[Job]) -> Schedule:
        """The schedule a Job class declares (``schedule = "..."``)."""
        where = f"{job_class.__qualname__}.schedule"
        parse_cron(job_class.schedule, where)
        return cls(job_class.job_name, str(job_class.schedule), job_class.job_name,
                   tuple(job_class.schedule_args), dict(job_class.schedule_kwargs),
                   job_class.schedule_catch_up)

    @property
    def _seconds(self) -> bool:
        return len(self.cron.split()) == 6

    def _iter(self, start: datetime) -> Any:
        return croniter(self.cron, start, second_at_beginning=self._seconds)

    def ticks(self, after: datetime, until: datetime, most: int = MOST_PER_ROUND
              ) -> list[datetime]:
        """The ticks in (after, until], the latest *most* of them, oldest first."""
        out: list[datetime] = []
        it = self._iter(until + timedelta(microseconds=1))
        while len(out) < most:
            tick = it.get_prev(datetime)
            if tick <= after:
                break
            out.append(tick)
        return out[::-1]

    def next_tick(self, after: datetime) -> datetime:
        """The first tick after *after*."""
        tick: datetime = self._iter(after).get_next(datetime)
        return tick


def from_table(table: Any, where: str) -> list[Schedule]:
    """Schedules from ``[tool.que.schedules]`` / Django's ``QUE["SCHEDULES"]``:
    ``{name: {"job": job_name, "cron": "...", "args": [...], "kwargs": {...},
    "catch_up": 0, "queue": ..., "priority": ...}}``."""
    if not isinstance(table, Mapping):
        raise ConfigurationError(f"{where}: schedules must be a table of name = {{...}}")
    out = []
    for name, spec in table.items():
        here = f"{where}, schedule {name!r}"
        if not isinstance(spec, Mapping):
            raise ConfigurationError(f"{here}: must be a table with job and cron")
        unknown = sorted(set(spec) - _KEYS)
        if unknown:
            raise ConfigurationError(f"{here}: unknown key(s) {', '.join(unknown)} "
                                     f"(known: {', '.join(sorted(_KEYS))})")
        for key in ("job", "cron"):
            if key not in spec:
                raise ConfigurationError(f"{here}: {key} is missing")
        args, kwargs = spec.get("args", []), spec.get("kwargs", {})
        if not isinstance(args, (list, tuple)) or not isinstance(kwargs, Mapping):
            raise ConfigurationError(f"{here}: args must be a list and kwargs a table")
        try:
            out.append(Schedule(str(name), spec["cron"], validation.check_job_name(spec["job"]),
                                tuple(args), dict(kwargs), spec.get("catch_up", 0),
                                spec.get("queue"), spec.get("priority")))
        except (ConfigurationError, InvalidJob) as exc:
            raise ConfigurationError(f"{where}: {exc}") from None
    return out


def declared(extra: Iterable[Schedule] = ()) -> list[Schedule]:
    """The schedules of the registered Job classes, and *extra*; names must
    not repeat."""
    from que_core.job import registry

    out: dict[str, Schedule] = {}
    for cls in registry.values():
        if cls.__dict__.get("schedule") is not None:  # its own, not a parent's
            s = Schedule.of_class(cls)
            out[s.name] = s
    for s in extra:
        if s.name in out and out[s.name] != s:
            raise ConfigurationError(f"schedule {s.name!r} is declared twice, differently")
        out[s.name] = s
    return sorted(out.values(), key=lambda s: s.name)


def _job_row(s: Schedule) -> tuple[Any, ...]:
    """The job part of enqueue_tick's parameters, from the registered class."""
    from que_core.job import registry

    cls = registry.get(s.job_class)
    if cls is None:
        raise ConfigurationError(
            f"schedule {s.name!r} names job {s.job_class!r}, which no registered Job class "
            "is (import its module in the worker)")
    job = cls.build(s.args, dict(s.kwargs), queue=s.queue, priority=s.priority)
    job._set_key(None, None)
    params = job._insert_params()  # queue, priority, run_at, class, args, kwargs, data
    return (params[0], params[1], *params[3:], job.key)


def enqueue_tick(conn: Connection, s: Schedule, tick: datetime,
                 job: tuple[Any, ...] | None = None) -> int | None:
    """Enqueue *s*'s job for *tick* unless that tick was enqueued already;
    the new job's id, or None."""
    rows = conn.execute(q("enqueue_tick"), (s.name, tick, *(job or _job_row(s))))
    return int(rows[0][0]) if rows else None


def _utc(conn: Connection) -> datetime:
    """The database's clock, in UTC (cron fields are read in UTC)."""
    ((now,),) = conn.execute(q("db_now"))
    return now.astimezone(timezone.utc)  # type: ignore[no-any-return]


class Scheduler(threading.Thread):
    """Enqueues the ticks of *schedules* on a session of its own, until
    *stop_event* is set (see the module's docstring for which ticks)."""

    def __init__(self, connect: Callable[[], Connection], schedules: Sequence[Schedule],
                 stop_event: threading.Event) -> None:
        super().__init__(name="que-scheduler", daemon=True)
        self._connect = connect
        self.schedules = list(schedules)
        self._jobs = {s.name: _job_row(s) for s in self.schedules}  # checked before starting
        self._stop_event = stop_event
        self.conn: Connection | None = None
        #: Per schedule, the latest tick this scheduler has handled.
        self.handled: dict[str, datetime] = {}
        self.started_at: datetime | None = None
        #: Ticks this scheduler enqueued (the others were someone else's).
        self.enqueued = 0
        self._pruned = 0.0

    def run(self) -> None:
        try:
            while not self._stop_event.is_set():
                try:
                    delay = self._round()
                except DatabaseError as exc:
                    log.warning("scheduler: %s; trying again", exc)
                    self._close()
                    delay = 1.0
                except Exception:  # never die silently, never spin
                    log.exception("scheduler: unexpected error; going on")
                    delay = 1.0
                self._stop_event.wait(delay)
        finally:
            self._close()

    def _session(self) -> Connection | None:
        if self.conn is None or self.conn.closed:
            self._close()
            self.conn = retry_connect(self._connect, self._stop_event, log, "scheduler")
        return self.conn

    def _close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.close()

    def _round(self) -> float:
        """Enqueue what is due; the seconds until the next tick."""
        conn = self._session()
        if conn is None:
            return 0.0
        now = _utc(conn)
        if self.started_at is None:
            self.started_at = now
            for s in self.schedules:
                self.handled[s.name] = self._start(conn, s, now)
        for s in self.schedules:
            after = max(self.handled[s.name], now - timedelta(seconds=LATE))
            for tick in s.ticks(after, now):
                self._enqueue(conn, s, tick)
                self.handled[s.name] = tick
        if time.monotonic() - self._pruned > 60:
            conn.execute(q("prune_ticks"), ([s.name for s in self.schedules], now - KEEP_TICKS))
            self._pruned = time.monotonic()
        now = _utc(conn)
        upcoming = min(s.next_tick(max(self.handled[s.name], now)) for s in self.schedules)
        # A little after the tick: the database's clock must have passed it.
        return min(max((upcoming - now).total_seconds(), 0.0) + 0.002, LONGEST_SLEEP)

    def _start(self, conn: Connection, s: Schedule, now: datetime) -> datetime:
        """Catch up *s* (its latest catch_up missed ticks, if it asks for
        that); the tick from which it goes on: just before *now*."""
        start = now - timedelta(microseconds=1)
        if s.catch_up:
            ((latest,),) = conn.execute(q("latest_tick"), (s.name,))
            if latest is not None:
                missed = s.ticks(latest, start, s.catch_up)
                for tick in missed:
                    self._enqueue(conn, s, tick)
                if missed:
                    log.info("schedule %s: caught up %s missed tick(s)", s.name, len(missed))
        return start

    def _enqueue(self, conn: Connection, s: Schedule, tick: datetime) -> None:
        job_id = enqueue_tick(conn, s, tick, self._jobs[s.name])
        if job_id is not None:
            self.enqueued += 1
            log.info("schedule %s: enqueued job %s for tick %s", s.name, job_id,
                     tick.isoformat())


def status(conn: Connection, schedules: Sequence[Schedule]) -> list[dict[str, Any]]:
    """Each schedule with its latest enqueued tick, that tick's job and its
    state now, and the next tick (``que schedules list``)."""
    now = _utc(conn)
    last = {r[0]: r[1:] for r in conn.execute(q("last_ticks"), ([s.name for s in schedules],))}
    out = []
    for s in schedules:
        tick, job_id, state = last.get(s.name, (None, None, None))
        out.append({
            "name": s.name, "cron": s.cron, "job_class": s.job_class, "catch_up": s.catch_up,
            "last_tick": tick, "last_job_id": job_id,
            "last_job_state": state if state is not None else ("gone" if job_id else None),
            "next_tick": s.next_tick(now).astimezone(timezone.utc).isoformat()
            .replace("+00:00", "Z"),
        })
    return out
