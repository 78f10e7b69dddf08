"""Job classes: defining, enqueueing and resolving jobs."""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import json
import logging
from collections.abc import AsyncIterator, Callable, Generator, Iterable, Iterator, Sequence
from contextlib import (
    AbstractAsyncContextManager,
    AbstractContextManager,
    asynccontextmanager,
    contextmanager,
    nullcontext,
)
from datetime import datetime
from typing import Any, ClassVar, TypeVar

from que_core import blocking, validation
from que_core.config import RunMode, settings
from que_core.connection import AsyncConnection, Connection, Row
from que_core.errors import ConfigurationError, DuplicateJob, InvalidJob, QueError
from que_core.plugins import awrap_connection, wrap_connection
from que_core.sql import q

log = logging.getLogger("que_core.job")

J = TypeVar("J", bound="Job")

#: What an enqueue does when a job of its class and unique key is waiting or
#: running: return that one (skip), update its arguments, priority and run_at
#: and return it (replace), or raise DuplicateJob.
ON_CONFLICT = ("skip", "replace", "raise")
#: How many times a unique enqueue tries again when the job it conflicted
#: with was gone (finished) before it could be read.
_UNIQUE_TRIES = 20

#: Job classes by stored name. Workers resolve ``job_class`` here and only
#: here: a name from the database is never imported or evaluated.
registry: dict[str, type[Job]] = {}

class _Bulk:
    """The jobs a bulk block collects. A task started inside an async block
    shares it (tasks copy the context); once the block has ended it takes no
    more, so a late enqueue inserts its job rather than losing it."""

    def __init__(self) -> None:
        self.jobs: list[Job] = []
        self.open = True


_bulk: contextvars.ContextVar[_Bulk | None] = contextvars.ContextVar("que_bulk", default=None)


def register_job(cls: type[J]) -> type[J]:
    """Put *cls* in the :data:`registry` under its ``job_name`` (done for
    every Job subclass unless it says ``register=False``)."""
    other = registry.get(cls.job_name)
    if other is not None and (other.__module__, other.__qualname__) != (
        cls.__module__,
        cls.__qualname__,
    ):
        raise ConfigurationError(
            f"job name {cls.job_name!r} is already used by "
            f"{other.__module__}.{other.__qualname__}"
        )
    registry[cls.job_name] = cls
    return cls


class JobAlreadyResolved(QueError):
    """``destroy()``, ``finish()``, ``expire()`` or ``retry_in()`` found the
    job's row no longer waiting: another run got there first."""


_async: dict[type[Job], bool] = {}


def is_async(cls: type[Job]) -> bool:
    """Whether *cls*'s ``run`` is ``async def``: a worker runs its jobs on
    its event loop, not on a thread."""
    found = _async.get(cls)
    if found is None:
        found = _async[cls] = inspect.iscoroutinefunction(cls.run)
    return found


def default_retry_delay(error_count: int) -> float:
    """Que's default: error_count ** 4 + 3 seconds."""
    return float(error_count**4 + 3)


class Job:
    """Base class of a job. Subclass it and implement :meth:`run`.

    Class attributes set the defaults of the class's jobs::

        class SendEmail(Job):
            priority = 10                # lower runs first (smallint)
            queue = "mail"
            retry_interval = 30          # seconds; default error_count ** 4 + 3
            maximum_retry_count = 5      # then the job is expired
            job_name = "SendEmail"       # stored name; default module.QualName
            keep_result = False          # store what run() returns (job.result())
            unique_key = None            # a key, or a function of run()'s arguments
            on_conflict = "skip"         # a duplicate key: "skip", "replace", "raise"
            schedule = None              # cron, e.g. "*/5 * * * *" (que work enqueues it)
            schedule_args = ()           # ... with these arguments
            schedule_kwargs = {}
            schedule_catch_up = 0        # missed ticks enqueued late, at most

            def run(self, user_id): ...
    """

    priority: ClassVar[int] = 100
    queue: ClassVar[str] = "default"
    maximum_retry_count: ClassVar[int] = 15
    retry_interval: ClassVar[float | None] = None
    keep_finished: ClassVar[bool | None] = None
    #: Seconds a run may take before it is stopped and counted as an error
    #: ("timed out after N seconds"); None: the worker's --max-run-time, if any.
    max_run_time: ClassVar[float | None] = None
    job_name: ClassVar[str] = "que_core.job.Job"
    #: Keep the row when the job finishes, with what run() returned as JSON
    #: (``job.result()``, :func:`que_core.result`); implies keep_finished.
    keep_result: ClassVar[bool] = False
    #: The unique key of the class's jobs, or a function of run()'s arguments
    #: that gives it (None: not unique). ``enqueue(unique_key=...)`` overrides it.
    unique_key: ClassVar[str | Callable[..., Any] | None] = None
    on_conflict: ClassVar[str] = "skip"
    #: A cron expression (five fields, or six with seconds first): every
    #: ``que work`` process enqueues the class's job at each tick, once in all.
    schedule: ClassVar[str | None] = None
    schedule_args: ClassVar[Sequence[Any]] = ()
    schedule_kwargs: ClassVar[dict[str, Any]] = {}
    #: Ticks missed while no worker ran that are enqueued late (the latest
    #: ones, at most this many); 0: none.
    schedule_catch_up: ClassVar[int] = 0

    # Per job, set by enqueue or by the worker.
    id: int | None
    args: list[Any]
    kwargs: dict[str, Any]
    run_at: datetime | None
    error_count: int
    tags: list[str]
    #: The name the job is stored under (``job_name`` of its class).
    job_class: str
    #: The raw driver connection the job runs on (the worker's own).
    conn: Any
    #: The same session as a que-core Connection: ``self.db.execute(sql, params)``
    #: with %s placeholders, whatever the driver. In an ``async def run()`` it
    #: is an AsyncConnection: ``await self.db.execute(sql, params)``.
    db: Any
    #: Set by the worker: why the job's row cannot be run (see que_core.execute).
    _problem: str | None = None
    _unknown: bool = False
    #: This job's unique key (None: none).
    key: str | None = None
    #: Set by a unique enqueue that found a job of the same class and key
    #: waiting or running: this is that job (its id, arguments, ...).
    duplicate: bool = False
    #: ... and with on_conflict="replace", it took this enqueue's arguments,
    #: priority and run_at (False: it was running, and is left as it was).
    replaced: bool = False
    _on_conflict: str = "skip"
    #: The caller's connection the job was enqueued on: job.result() waits there.
    _enqueued_on: Any = None
    #: Set by the watchdog: why the run is being stopped (timed out, cancelled).
    _stop: BaseException | None = None
    #: Set by the watchdog: the job's cancel request, (when, why).
    _cancel: tuple[str, str | None] | None = None

    def __init_subclass__(cls, register: bool = True, **kw: Any) -> None:
        """``class MyJob(Job, register=False)`` leaves it out of the
        :data:`registry` until :func:`register_job` is called: workers in this
        process will not run rows naming it."""
        super().__init_subclass__(**kw)
        if "job_name" not in cls.__dict__:
            cls.job_name = f"{cls.__module__}.{cls.__qualname__}"
        validation.check_job_name(cls.job_name)
        validation.check_priority(cls.priority)
        validation.check_queue(cls.queue)
        _check_conflict(cls.on_conflict, f"{cls.__qualname__}.on_conflict")
        if cls.__dict__.get("schedule") is not None:
            from que_core.schedules import Schedule

            Schedule.of_class(cls)  # a bad expression fails here, naming the class
        validation.check_max_run_time(cls.max_run_time, cls.__qualname__)
        if register:
            register_job(cls)

    def __init__(
        self,
        args: Sequence[Any] = (),
        kwargs: dict[str, Any] | None = None,
        *,
        id: int | None = None,
        queue: str | None = None,
        priority: int | None = None,
        run_at: datetime | None = None,
        error_count: int = 0,
        tags: Sequence[str] = (),
        conn: Connection | AsyncConnection | None = None,
    ) -> None:
        self.id = id
        self.job_class = type(self).job_name
        self.args = list(args)
        self.kwargs = dict(kwargs or {})
        # Instance values shadow the class defaults of the same name.
        self.queue = queue if queue is not None else type(self).queue  # type: ignore[misc]
        self.priority = priority if priority is not None else type(self).priority  # type: ignore[misc]
        self.run_at = run_at
        self.error_count = error_count
        self.tags = list(tags)
        self.db = conn
        self.conn = conn.raw if conn is not None else None
        self._resolved = False
        #: The queries.sql statement run() resolved the job with, if any.
        self._resolved_by: str | None = None

    def __repr__(self) -> str:
        return f"<{type(self).job_name} id={self.id} queue={self.queue!r} priority={self.priority}>"

    # -- the job's work -------------------------------------------------

    def run(self, *args: Any, **kwargs: Any) -> Any:
        """Do the job's work. Override it. What it returns is kept (as JSON)
        when the class has ``keep_result``, and ignored otherwise."""
        raise NotImplementedError(f"{type(self).__qualname__} must implement run()")

    def retry_delay(self, error_count: int) -> float:
        """Seconds to wait before retrying after error number *error_count*."""
        if self.retry_interval is not None:
            return float(self.retry_interval)
        return default_retry_delay(error_count)

    # -- resolving the job from inside run() ------------------------------

    def transaction(self) -> AbstractContextManager[None]:
        """A transaction on the job's connection, whatever the driver.

        Resolve the job inside it to commit its effects and its completion
        together::

            with self.transaction():
                self.conn.execute(...)   # the job's own writes
                self.destroy()
        """
        if self.db is None:
            return nullcontext()
        block: AbstractContextManager[None] = self.db.transaction()
        return block

    def destroy(self) -> None:
        """Delete the job: it is done."""
        self._resolve("destroy_job", (self.id,))

    def finish(self) -> None:
        """Mark the job finished and keep its row."""
        self._resolve("finish_job", (self.id,))

    def expire(self) -> None:
        """Mark the job expired: it will not run again."""
        self._resolve("expire_job", (self.id,))

    def retry_in(self, seconds: float) -> None:
        """Run the job again in *seconds*, without counting an error."""
        self._resolve("retry_job", (float(seconds), self.id))

    @property
    def resolved(self) -> bool:
        return self._resolved

    @property
    def cancelled(self) -> bool:
        """True once the job was cancelled while it runs: a job that checks
        it at a safe point and returns is recorded as cancelled. One that
        does not is stopped a moment later (see que_core.watchdog)."""
        return self._cancel is not None

    def _resolve(self, query: str, params: tuple[Any, ...]) -> None:
        rows = self.db.execute(q(query), params) if self._stored else []
        self._resolved_with(query, rows)

    @property
    def _stored(self) -> bool:
        return self.db is not None and self.id is not None

    def _resolved_with(self, query: str, rows: list[Row]) -> None:
        if self._stored and not rows and not self._resolved:
            # Another run resolved the job first: a process killed while
            # this job's commit was in flight freed the lock before the
            # commit became visible. Raising rolls back this run's
            # transaction, so the job's effect commits only once.
            raise JobAlreadyResolved(
                f"job {self.id} was already resolved or deleted by someone else; "
                "this run's transaction must not commit"
            )
        self._resolved = True
        self._resolved_by = query

    # -- the same from inside an async def run() ----------------------------

    def atransaction(self) -> AbstractAsyncContextManager[None]:
        """:meth:`transaction` in an ``async def run()``, on the job's async
        session::

            async with self.atransaction():
                await self.db.execute(...)   # the job's own writes
                await self.adestroy()
        """
        if self.db is None:
            return nullcontext()
        block: AbstractAsyncContextManager[None] = self.db.atransaction()
        return block

    async def adestroy(self) -> None:
        """:meth:`destroy` from an ``async def run()``."""
        await self._aresolve("destroy_job", (self.id,))

    async def afinish(self) -> None:
        """:meth:`finish` from an ``async def run()``."""
        await self._aresolve("finish_job", (self.id,))

    async def aexpire(self) -> None:
        """:meth:`expire` from an ``async def run()``."""
        await self._aresolve("expire_job", (self.id,))

    async def aretry_in(self, seconds: float) -> None:
        """:meth:`retry_in` from an ``async def run()``."""
        await self._aresolve("retry_job", (float(seconds), self.id))

    async def _aresolve(self, query: str, params: tuple[Any, ...]) -> None:
        rows = await self.db.execute(q(query), params) if self._stored else []
        self._resolved_with(query, rows)

    # -- enqueueing -------------------------------------------------------

    @classmethod
    def build(
        cls: type[J],
        args: Sequence[Any] = (),
        kwargs: dict[str, Any] | None = None,
        *,
        priority: int | None = None,
        queue: str | None = None,
        run_at: datetime | None = None,
        tags: Sequence[str] | None = None,
        unique_key: Any = None,
        on_conflict: str | None = None,
    ) -> J:
        """A checked, not yet enqueued job of this class."""
        a, k = validation.check_args(tuple(args), dict(kwargs or {}))
        job = cls(a, k, **cls._options(priority, queue, run_at, tags))
        job._set_key(unique_key, on_conflict)
        return job

    def _set_key(self, explicit: Any, on_conflict: str | None) -> None:
        """This job's unique key: *explicit*, else the class's (a string, or
        a function of the job's arguments)."""
        cls = type(self)
        value = explicit
        if value is None and cls.unique_key is not None:
            value = cls.unique_key
            if callable(value):
                try:
                    value = value(*self.args, **self.kwargs)
                except Exception as exc:
                    raise InvalidJob(f"{cls.__qualname__}.unique_key raised "
                                     f"{type(exc).__name__}: {exc}") from exc
        if value is not None:
            self.key = validation.check_unique_key(value)
        if on_conflict is not None:
            self._on_conflict = _check_conflict(on_conflict, "on_conflict")
        else:
            self._on_conflict = cls.on_conflict

    @classmethod
    def _options(cls, priority: int | None, queue: str | None, run_at: datetime | None,
                 tags: Sequence[str] | None) -> dict[str, Any]:
        """enqueue's own options, checked, with the class's defaults."""
        return {
            "queue": validation.check_queue(queue if queue is not None else cls.queue),
            "priority": validation.check_priority(
                priority if priority is not None else cls.priority),
            "run_at": validation.check_run_at(run_at),
            "tags": validation.check_tags(tags),
        }

    @classmethod
    def enqueue(
        cls: type[J],
        *args: Any,
        conn: Any = None,
        priority: int | None = None,
        queue: str | None = None,
        run_at: datetime | None = None,
        tags: Sequence[str] | None = None,
        unique_key: Any = None,
        on_conflict: str | None = None,
        **kwargs: Any,
    ) -> J:
        """Insert a job of this class in the transaction of *conn*.

        *conn* is the caller's raw driver connection (psycopg, psycopg2,
        pg8000, ...): the job commits or rolls back with the caller's work.
        Returns the job, with its ``id``.

        With a *unique_key* (or the class's), nothing is inserted while a job
        of this class with that key is waiting or running: that job is
        returned, with ``duplicate`` set, and *on_conflict* (default the
        class's ``on_conflict``) says what else happens: ``"skip"``,
        ``"replace"`` (its arguments, priority and run_at become this
        enqueue's, unless it is running) or ``"raise"`` (:class:`DuplicateJob`).
        """
        job = cls.build(args, kwargs, priority=priority, queue=queue, run_at=run_at, tags=tags,
                        unique_key=unique_key, on_conflict=on_conflict)
        if settings.run_mode is RunMode.INLINE:
            job._run_inline(conn)
        elif not job._collected():
            c = _connection(conn)
            job._enqueued_on = conn if conn is not None else c.raw
            _run_steps(c, job._insert_steps())
        return job

    @classmethod
    async def aenqueue(
        cls: type[J],
        *args: Any,
        conn: Any = None,
        priority: int | None = None,
        queue: str | None = None,
        run_at: datetime | None = None,
        tags: Sequence[str] | None = None,
        unique_key: Any = None,
        on_conflict: str | None = None,
        **kwargs: Any,
    ) -> J:
        """:meth:`enqueue` from async code: the same options and checks, in
        the transaction of the async connection *conn* (a
        ``psycopg.AsyncConnection``, an ``asyncpg`` connection or pool
        connection, a SQLAlchemy ``AsyncSession`` or ``AsyncConnection``, ...).
        """
        job = cls.build(args, kwargs, priority=priority, queue=queue, run_at=run_at, tags=tags,
                        unique_key=unique_key, on_conflict=on_conflict)
        if settings.run_mode is RunMode.INLINE:
            await job._arun_inline(conn)
        elif not job._collected():
            c = await _aconnection(conn)
            job._enqueued_on = conn
            await _arun_steps(c, job._insert_steps())
        return job

    @classmethod
    def enqueue_many(
        cls: type[J],
        args_list: Iterable[Sequence[Any]],
        *,
        conn: Any = None,
        priority: int | None = None,
        queue: str | None = None,
        run_at: datetime | None = None,
        tags: Sequence[str] | None = None,
    ) -> list[J]:
        """Enqueue one job per element of *args_list* (each a sequence of
        positional arguments) with one COPY."""
        jobs = cls._build_many(args_list, priority, queue, run_at, tags)
        if settings.run_mode is RunMode.INLINE:
            for job in jobs:
                job._run_inline(conn)
        else:
            insert_many(jobs, conn)
        return jobs

    @classmethod
    async def aenqueue_many(
        cls: type[J],
        args_list: Iterable[Sequence[Any]],
        *,
        conn: Any = None,
        priority: int | None = None,
        queue: str | None = None,
        run_at: datetime | None = None,
        tags: Sequence[str] | None = None,
    ) -> list[J]:
        """:meth:`enqueue_many` from async code, on an async connection."""
        jobs = cls._build_many(args_list, priority, queue, run_at, tags)
        if settings.run_mode is RunMode.INLINE:
            for job in jobs:
                await job._arun_inline(conn)
        else:
            await ainsert_many(jobs, conn)
        return jobs

    @classmethod
    def _build_many(
        cls: type[J],
        args_list: Iterable[Sequence[Any]],
        priority: int | None,
        queue: str | None,
        run_at: datetime | None,
        tags: Sequence[str] | None,
    ) -> list[J]:
        """Checked jobs, one per element of *args_list*; the shared options checked once."""
        options = cls._options(priority, queue, run_at, tags)
        jobs = [cls(*validation.check_args(tuple(a), {}), **options) for a in args_list]
        if cls.unique_key is not None:
            for job in jobs:
                job._set_key(None, None)
        return jobs

    def _collected(self) -> bool:
        """Check that the job can be stored; True when a bulk block took it
        (it is inserted when the block ends), False when it is to be
        inserted now."""
        _check_storable(type(self))
        pending = _bulk.get()
        if pending is None or not pending.open:
            return False
        pending.jobs.append(self)
        return True

    def _insert_steps(self) -> Generator[Step, Any, None]:
        """The statements that insert this job now (one, or a unique
        enqueue's); sets its id."""
        if self.key is not None:
            yield from self._unique_steps()
            return
        ((self.id, self.run_at),) = yield "execute", q("insert_job"), self._insert_params()
        log.debug("enqueued %s", self)

    def _insert_params(self) -> tuple[Any, ...]:
        return (
            self.queue,
            self.priority,
            self.run_at,
            type(self).job_name,
            validation.dumps(self.args),
            validation.dumps(self.kwargs),
            validation.dumps(self._data()),
        )

    def _data(self) -> dict[str, Any]:
        return {"tags": self.tags} if self.tags else {}

    def _unique_steps(self) -> Generator[Step, Any, None]:
        """The statements of a unique enqueue (see :meth:`enqueue`), one at a
        time. The unique index decides (INSERT ... ON CONFLICT), never a read
        first: the read after a conflict only fetches the job that won. When
        that one finished before it could be read, the insert is tried again."""
        cls = type(self)
        replace = self._on_conflict == "replace"
        params = (*self._insert_params(), self.key)
        for _ in range(_UNIQUE_TRIES):
            rows = yield "execute", q("replace_unique_job" if replace else "insert_unique_job"), \
                params
            if rows:
                ((self.id, self.run_at, self.replaced),) = rows
                self.duplicate = self.replaced
                log.debug("enqueued %s%s", self, " (replaced a duplicate)" if self.replaced else "")
                return
            rows = yield "execute", q("get_unique_job"), (cls.job_name, self.key)
            if not rows:
                continue  # it finished meanwhile: the key is free again
            ((self.id, self.run_at, args, kwargs, priority, queue),) = rows
            self.priority, self.queue = priority, queue  # type: ignore[misc]
            self.args, self.kwargs = json.loads(args), json.loads(kwargs)
            self.duplicate = True
            if self._on_conflict == "raise":
                raise DuplicateJob(
                    f"a {cls.job_name} job with unique key {self.key!r} is already waiting or "
                    f"running (job {self.id}); nothing was inserted", self)
            return
        raise QueError(f"could not enqueue {cls.job_name} with unique key {self.key!r}: "
                       f"{_UNIQUE_TRIES} tries each found a job that was gone when read")

    # -- results ------------------------------------------------------------

    def result(self, timeout: float | None = None, *, conn: Any = None) -> Any:
        """Wait for the job to finish and return what its run() returned (a
        class with ``keep_result``), as :func:`que_core.result` does; on the
        connection it was enqueued on unless *conn* is given. Call it after
        the enqueue's transaction committed."""
        inline = self.__dict__.get("_inline_result")
        if inline is not None:
            return inline[0]
        from que_core.results import result

        return result(self._committed_id(), conn=conn if conn is not None else self._enqueued_on,
                      timeout=timeout)

    async def aresult(self, timeout: float | None = None, *, conn: Any = None) -> Any:
        """:meth:`result` from async code, on an async connection."""
        inline = self.__dict__.get("_inline_result")
        if inline is not None:
            return inline[0]
        from que_core.results import aresult

        return await aresult(self._committed_id(),
                             conn=conn if conn is not None else self._enqueued_on,
                             timeout=timeout)

    def _committed_id(self) -> int:
        if self.id is None:
            raise QueError(f"{self!r} has no id: it was not enqueued (or its bulk block has "
                           "not ended)")
        return self.id

    def _run_inline(self, conn: Any) -> None:
        db = wrap_connection(conn) if conn is not None else None
        if db is not None:
            self.conn = db.raw
        if not is_async(type(self)):
            self.db = db
            self._inline_result = (self.run(*self.args, **self.kwargs),)
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # none running here: run it on one of its own
            self.db = blocking.async_over(db) if db is not None else None
            self._inline_result = (asyncio.run(self.run(*self.args, **self.kwargs)),)
            return
        raise ConfigurationError(
            f"{type(self).__qualname__}.run is async def and enqueue was called inside a "
            f"running event loop: in inline mode, await {type(self).__qualname__}.aenqueue(...) "
            "runs it on that loop"
        )

    async def _arun_inline(self, conn: Any) -> None:
        adb = await awrap_connection(conn) if conn is not None else None
        if adb is not None:
            self.conn = adb.raw
        if inspect.iscoroutinefunction(self.run):
            # An async job gets the async session (until the worker runs them,
            # this is the one place one runs).
            self.db = adb
            self._inline_result = (await self.run(*self.args, **self.kwargs),)
            return
        # A sync job runs in a thread, as a worker would run it, and its
        # statements go to the caller's session through the caller's loop,
        # which stays free meanwhile.
        if adb is not None:
            self.db = blocking.on_loop(adb, asyncio.get_running_loop())
        self._inline_result = (await asyncio.to_thread(self.run, *self.args, **self.kwargs),)


def _check_conflict(value: Any, what: str) -> str:
    if value not in ON_CONFLICT:
        raise ConfigurationError(f"{what} is {value!r}; it must be one of "
                                 f"{', '.join(map(repr, ON_CONFLICT))}")
    return str(value)


def _run_steps(c: Connection, steps: Generator[Step, Any, None]) -> None:
    step: Step | None = next(steps)
    while step is not None:
        method, sql, arg = step
        step = _then(steps, getattr(c, method)(sql, arg))


async def _arun_steps(c: AsyncConnection, steps: Generator[Step, Any, None]) -> None:
    step: Step | None = next(steps)
    while step is not None:
        method, sql, arg = step
        step = _then(steps, await getattr(c, method)(sql, arg))


def _check_storable(cls: type[Job]) -> None:
    """Refuse a class of the script being run stored under its default name:
    no worker could ever resolve ``__main__.Name``, so the job would fail forever."""
    if cls.job_name.partition(".")[0] != "__main__":
        return
    name = cls.__qualname__
    raise InvalidJob(
        f"{name} is defined in the script being run (__main__), so its jobs would be stored "
        f"as {cls.job_name!r}, a name no worker can resolve: workers register job classes "
        f"by importing their modules, never your script as __main__. Define {name} in a "
        f"module of its own, import it from the script and give that module to the worker "
        f"(que work yourmodule), or give the class a name of its own: "
        f"job_name = {name!r}"
    )


def _connection(conn: Any) -> Connection:
    if conn is None:
        if settings.connection_provider is None:
            raise ConfigurationError(
                "enqueue needs a connection: pass conn=<your driver connection>"
            )
        conn = settings.connection_provider()
    return wrap_connection(conn)


async def _aconnection(conn: Any) -> AsyncConnection:
    if conn is None:
        # A connection_provider (Django's) gives sync sessions, which the
        # event loop must not block on: none is taken implicitly.
        raise ConfigurationError(
            "aenqueue needs a connection: pass conn=<your async driver connection>"
            + ("" if settings.connection_provider is None else
               " (the configured connection_provider, Django's, is sync and is not used "
               "from async code: to enqueue in Django's transaction, call enqueue inside "
               "transaction.atomic() in a function run with asgiref's sync_to_async)")
        )
    return await awrap_connection(conn)


#: One step of a bulk insert: the Connection method (``execute`` or
#: ``copy_in``), the SQL and its parameters or rows. The steps generator gets
#: each step's result back.
Step = tuple[str, str, Any]


def _bulk_steps(jobs: Sequence[Job]) -> Generator[Step, Any, None]:
    """The statements of a bulk insert of *jobs*, in order, inside one
    transaction block: one COPY of the jobs without a unique key, then one
    statement for each job with one (the unique index decides each); sets the
    jobs' ids.

    The per-job NOTIFY is skipped for the COPY: workers find bulk-inserted
    jobs by polling, which takes many at a time.
    """
    plain = [j for j in jobs if j.key is None]
    if plain:
        yield from _copy_steps(plain)
    for job in jobs:
        if job.key is not None:  # one statement each: the unique index decides
            yield from job._unique_steps()


def _copy_steps(jobs: Sequence[Job]) -> Generator[Step, Any, None]:
    """The COPY of jobs without unique keys (see :func:`_bulk_steps`)."""
    dumps = validation.dumps
    ((before,),) = yield "execute", q("get_skip_notify"), ()
    yield "execute", q("set_skip_notify"), ("true",)
    ((now, ids),) = yield "execute", q("reserve_job_ids"), (len(jobs),)
    yield "copy_in", q("copy_jobs"), (
        (job_id, j.queue, j.priority, j.run_at or now, type(j).job_name, dumps(j.args),
         dumps(j.kwargs) if j.kwargs else "{}", dumps(j._data()) if j.tags else "{}", 2)
        for job_id, j in zip(ids, jobs, strict=True)
    )
    yield "execute", q("set_skip_notify"), (before,)
    for job, job_id in zip(jobs, ids, strict=True):
        job.id = job_id
        if job.run_at is None:
            job.run_at = now


def _then(steps: Generator[Step, Any, None], result: Any) -> Step | None:
    """The step after the one that gave *result*; None after the last."""
    try:
        return steps.send(result)
    except StopIteration:
        return None


def _storable(jobs: Sequence[Job]) -> bool:
    """Whether there is anything to insert; raises for a job that cannot be stored."""
    for cls in {type(j) for j in jobs}:
        _check_storable(cls)
    return bool(jobs)


def insert_many(jobs: Sequence[Job], conn: Any) -> None:
    """Insert *jobs* (of any classes) with one COPY; sets their ids."""
    if not _storable(jobs):
        return
    c = _connection(conn)
    for job in jobs:
        job._enqueued_on = conn if conn is not None else c.raw
    with c.transaction():
        _run_steps(c, _bulk_steps(jobs))


async def ainsert_many(jobs: Sequence[Job], conn: Any) -> None:
    """:func:`insert_many` on an async connection."""
    if not _storable(jobs):
        return
    c = await _aconnection(conn)
    for job in jobs:
        job._enqueued_on = conn
    async with c.atransaction():
        await _arun_steps(c, _bulk_steps(jobs))


@contextmanager
def _collecting() -> Iterator[list[Job]]:
    """Inside the block, ``enqueue`` and ``aenqueue`` add their jobs to the
    list this yields instead of inserting them."""
    bulk = _Bulk()
    token = _bulk.set(bulk)
    try:
        yield bulk.jobs
    finally:
        bulk.open = False
        _bulk.reset(token)


@contextmanager
def bulk_enqueue(conn: Any = None) -> Iterator[list[Job]]:
    """Collect every ``enqueue`` inside the block and insert them all in one
    statement when it ends (nothing is inserted if the block raises)::

        with bulk_enqueue(conn=c):
            for user in users:
                SendEmail.enqueue(user.id)
    """
    with _collecting() as jobs:
        yield jobs
    insert_many(jobs, conn)


@asynccontextmanager
async def abulk_enqueue(conn: Any = None) -> AsyncIterator[list[Job]]:
    """:func:`bulk_enqueue` from async code, on an async connection::

        async with abulk_enqueue(conn=c):
            for user in users:
                await SendEmail.aenqueue(user.id)
    """
    with _collecting() as jobs:
        yield jobs
    await ainsert_many(jobs, conn)
