"""Job classes: defining, enqueueing and resolving jobs."""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
from collections.abc import AsyncIterator, Generator, Iterable, Iterator, Sequence
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
from que_core.errors import ConfigurationError, InvalidJob, QueError
from que_core.plugins import awrap_connection, wrap_connection
from que_core.sql import q

log = logging.getLogger("que_core.job")

J = TypeVar("J", bound="Job")

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

    def run(self, *args: Any, **kwargs: Any) -> None:
        """Do the job's work. Override it."""
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
    ) -> J:
        """A checked, not yet enqueued job of this class."""
        a, k = validation.check_args(tuple(args), dict(kwargs or {}))
        return cls(a, k, **cls._options(priority, queue, run_at, tags))

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
        **kwargs: Any,
    ) -> J:
        """Insert a job of this class in the transaction of *conn*.

        *conn* is the caller's raw driver connection (psycopg, psycopg2,
        pg8000, ...): the job commits or rolls back with the caller's work.
        Returns the job, with its ``id``.
        """
        job = cls.build(args, kwargs, priority=priority, queue=queue, run_at=run_at, tags=tags)
        if settings.run_mode is RunMode.INLINE:
            job._run_inline(conn)
        elif not job._collected():
            job._inserted(_connection(conn).execute(*job._insert()))
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
        **kwargs: Any,
    ) -> J:
        """:meth:`enqueue` from async code: the same options and checks, in
        the transaction of the async connection *conn* (a
        ``psycopg.AsyncConnection``, an ``asyncpg`` connection or pool
        connection, a SQLAlchemy ``AsyncSession`` or ``AsyncConnection``, ...).
        """
        job = cls.build(args, kwargs, priority=priority, queue=queue, run_at=run_at, tags=tags)
        if settings.run_mode is RunMode.INLINE:
            await job._arun_inline(conn)
        elif not job._collected():
            c = await _aconnection(conn)
            job._inserted(await c.execute(*job._insert()))
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
        return [cls(*validation.check_args(tuple(a), {}), **options) for a in args_list]

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

    def _insert(self) -> tuple[str, tuple[Any, ...]]:
        """The statement that inserts this job, and its parameters."""
        return q("insert_job"), self._insert_params()

    def _inserted(self, rows: list[Row]) -> None:
        ((self.id, self.run_at),) = rows
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

    def _run_inline(self, conn: Any) -> None:
        db = wrap_connection(conn) if conn is not None else None
        if db is not None:
            self.conn = db.raw
        if not is_async(type(self)):
            self.db = db
            self.run(*self.args, **self.kwargs)
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # none running here: run it on one of its own
            self.db = blocking.async_over(db) if db is not None else None
            asyncio.run(self.run(*self.args, **self.kwargs))  # type: ignore[func-returns-value, arg-type]
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
            await self.run(*self.args, **self.kwargs)
            return
        # A sync job runs in a thread, as a worker would run it, and its
        # statements go to the caller's session through the caller's loop,
        # which stays free meanwhile.
        if adb is not None:
            self.db = blocking.on_loop(adb, asyncio.get_running_loop())
        await asyncio.to_thread(self.run, *self.args, **self.kwargs)


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
    """The statements of a bulk insert of *jobs* with one COPY, in order,
    inside one transaction block; sets the jobs' ids at the end.

    The per-job NOTIFY is skipped for the batch: workers find bulk-inserted
    jobs by polling, which takes many at a time.
    """
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
    steps = _bulk_steps(jobs)
    with c.transaction():
        step: Step | None = next(steps)
        while step is not None:
            method, sql, arg = step
            step = _then(steps, getattr(c, method)(sql, arg))


async def ainsert_many(jobs: Sequence[Job], conn: Any) -> None:
    """:func:`insert_many` on an async connection."""
    if not _storable(jobs):
        return
    c = await _aconnection(conn)
    steps = _bulk_steps(jobs)
    async with c.atransaction():
        step: Step | None = next(steps)
        while step is not None:
            method, sql, arg = step
            step = _then(steps, await getattr(c, method)(sql, arg))


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
