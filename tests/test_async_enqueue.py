"""aenqueue, aenqueue_many and abulk_enqueue, on every kind of async connection
an application has: psycopg 3's AsyncConnection, an asyncpg connection, a
connection from an asyncpg pool, and SQLAlchemy's AsyncSession and
AsyncConnection on the psycopg and asyncpg dialects. Each kind runs when its
adapter (and SQLAlchemy, for those) is installed.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import pytest_asyncio

from conformance.jobs import LOG_TABLE, PlainJob, SelfResolving
from que_core import Job, abulk_enqueue, bulk_enqueue, migrate, plugins, run_mode
from que_core.blocking import sync_side
from que_core.connection import AsyncConnection, Connection
from que_core.errors import ConfigurationError, InvalidJob
from que_core.testing import databases
from tests.helpers import sqlalchemy_url

pytestmark = pytest.mark.asyncio

ACCOUNTS = "CREATE TABLE accounts (id int PRIMARY KEY)"


@dataclass
class Caller:
    """An application's connection in a transaction it began, its own way."""

    conn: Any  # what the application passes as conn=
    write: Callable[[int], Awaitable[Any]]  # an INSERT INTO accounts of its own
    commit: Callable[[], Awaitable[Any]]
    rollback: Callable[[], Awaitable[Any]]


Open = Callable[[str], Awaitable[tuple[Caller, Callable[[], Awaitable[Any]]]]]


async def _psycopg(dsn: str) -> tuple[Caller, Callable[[], Awaitable[Any]]]:
    import psycopg

    raw = await psycopg.AsyncConnection.connect(dsn)  # autocommit off: psycopg begins

    async def write(n: int) -> None:
        await raw.execute("INSERT INTO accounts VALUES (%s)", [n])

    return Caller(raw, write, raw.commit, raw.rollback), raw.close


async def _asyncpg_caller(raw: Any) -> Caller:
    """*raw* in a transaction of asyncpg's own (``raw.transaction()``); the
    caller's commit and rollback end it and start the next, as the other
    kinds' sessions begin their next transaction by themselves."""
    transaction = raw.transaction()
    await transaction.start()

    async def write(n: int) -> None:
        await raw.execute("INSERT INTO accounts VALUES ($1)", n)

    def ending(end: str) -> Callable[[], Awaitable[None]]:
        async def finish() -> None:
            nonlocal transaction
            await getattr(transaction, end)()
            transaction = raw.transaction()
            await transaction.start()

        return finish

    return Caller(raw, write, ending("commit"), ending("rollback"))


async def _asyncpg(dsn: str) -> tuple[Caller, Callable[[], Awaitable[Any]]]:
    import asyncpg
    from que_adapter_asyncpg import connect_args

    raw = await asyncpg.connect(**connect_args(dsn))
    return await _asyncpg_caller(raw), raw.close


async def _asyncpg_pool(dsn: str) -> tuple[Caller, Callable[[], Awaitable[Any]]]:
    import asyncpg
    from que_adapter_asyncpg import connect_args

    pool = await asyncpg.create_pool(**connect_args(dsn), min_size=1, max_size=2)
    raw = await pool.acquire()  # a PoolConnectionProxy

    async def close() -> None:
        await pool.release(raw)
        await pool.close()

    return await _asyncpg_caller(raw), close


def _sqlalchemy(driver: str, kind: str) -> Open:
    async def open_caller(dsn: str) -> tuple[Caller, Callable[[], Awaitable[Any]]]:
        sa = pytest.importorskip("sqlalchemy")
        sa_asyncio = pytest.importorskip("sqlalchemy.ext.asyncio")
        engine = sa_asyncio.create_async_engine(
            sqlalchemy_url(dsn, driver), poolclass=sa.pool.NullPool
        )
        if kind == "session":
            obj = sa_asyncio.AsyncSession(engine)
        else:
            obj = await engine.connect()

        async def write(n: int) -> None:
            await obj.execute(sa.text("INSERT INTO accounts VALUES (:n)"), {"n": n})

        async def close() -> None:
            await obj.close()
            await engine.dispose()

        return Caller(obj, write, obj.commit, obj.rollback), close

    return open_caller


#: kind -> (the adapter it needs, how to open one)
KINDS: dict[str, tuple[str, Open]] = {
    "psycopg": ("psycopg", _psycopg),
    "asyncpg": ("asyncpg", _asyncpg),
    "asyncpg-pool": ("asyncpg", _asyncpg_pool),
    "sqlalchemy-session-psycopg": ("psycopg", _sqlalchemy("psycopg", "session")),
    "sqlalchemy-connection-psycopg": ("psycopg", _sqlalchemy("psycopg", "connection")),
    "sqlalchemy-session-asyncpg": ("asyncpg", _sqlalchemy("asyncpg", "session")),
    "sqlalchemy-connection-asyncpg": ("asyncpg", _sqlalchemy("asyncpg", "connection")),
}


@pytest.fixture(params=list(KINDS))
def kind(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    if KINDS[name][0] not in plugins.async_adapters():
        pytest.skip(f"the {KINDS[name][0]} adapter is not installed")
    return name


@pytest.fixture
def adsn(kind: str, server_dsn: str) -> Iterator[str]:
    """A database migrated to the latest schema, made through the kind's adapter,
    with the tests' log table and an accounts table of the application's."""
    adapter = plugins.get_async_adapter(KINDS[kind][0])
    with databases.temporary_database(adapter, server_dsn) as dsn:
        conn = sync_side(adapter).connect(dsn)
        try:
            migrate(conn)
            conn.execute(LOG_TABLE)
            conn.execute(ACCOUNTS)
        finally:
            conn.close()
        yield dsn


@pytest_asyncio.fixture
async def other(kind: str, adsn: str) -> AsyncIterator[AsyncConnection]:
    """Another session on the database: it sees only what was committed."""
    conn = await plugins.get_async_adapter(KINDS[kind][0]).aconnect(adsn)
    yield conn
    await conn.close()


@pytest_asyncio.fixture
async def caller(kind: str, adsn: str) -> AsyncIterator[Caller]:
    opened, close = await KINDS[kind][1](adsn)
    yield opened
    await close()


async def _count(conn: AsyncConnection, table: str = "que_jobs") -> int:
    return int((await conn.execute(f"SELECT count(*) FROM {table}"))[0][0])


async def _tags(conn: AsyncConnection) -> list[Any]:
    rows = await conn.execute("SELECT args::text FROM que_jobs ORDER BY id")
    return [json.loads(r[0])[0] for r in rows]


# -- commit and rollback, on every kind ---------------------------------------------------


async def test_aenqueue_commits_with_the_callers_transaction(
    caller: Caller, other: AsyncConnection
) -> None:
    await caller.write(1)
    at = datetime.now(timezone.utc) + timedelta(hours=1)
    job = await PlainJob.aenqueue(
        "a", conn=caller.conn, priority=5, queue="mail", run_at=at, tags=["t"], flag=True
    )
    assert isinstance(job.id, int) and job.run_at == at
    assert await _count(other) == 0 and await _count(other, "accounts") == 0
    await caller.commit()
    row = await other.execute(
        "SELECT job_class, args::text, kwargs::text, queue, priority, run_at, data::text "
        "FROM que_jobs WHERE id = %s",
        [job.id],
    )
    assert row == [
        ("conformance.jobs.PlainJob", '["a"]', '{"flag": true}', "mail", 5, at, '{"tags": ["t"]}')
    ]
    assert await _count(other, "accounts") == 1


async def test_aenqueue_first_in_the_transaction_is_gone_with_its_rollback(
    caller: Caller, other: AsyncConnection
) -> None:
    # The job is the transaction's first statement (SQLAlchemy's asyncpg
    # dialect would not have sent BEGIN yet), then the caller's own write.
    job = await PlainJob.aenqueue("rolled back", conn=caller.conn)
    assert isinstance(job.id, int)
    await caller.write(1)
    assert await _count(other) == 0
    await caller.rollback()
    assert await _count(other) == 0 and await _count(other, "accounts") == 0


async def test_abulk_enqueue_and_aenqueue_many_ride_the_callers_transaction(
    caller: Caller, other: AsyncConnection
) -> None:
    async with abulk_enqueue(conn=caller.conn) as pending:
        await PlainJob.aenqueue("b1")
        await SelfResolving.aenqueue("b2", priority=3)
        assert [j.id for j in pending] == [None, None]  # inserted when the block ends
    many = await PlainJob.aenqueue_many([["m1"], ["m2"]], conn=caller.conn, queue="bulk")
    assert all(isinstance(j.id, int) for j in [*pending, *many])
    await caller.write(1)
    assert await _count(other) == 0
    await caller.rollback()
    assert await _count(other) == 0

    async with abulk_enqueue(conn=caller.conn):
        await PlainJob.aenqueue("c1")
    await PlainJob.aenqueue_many([["c2"], ["c3"]], conn=caller.conn)
    await caller.commit()
    assert await _tags(other) == ["c1", "c2", "c3"]


async def test_abulk_enqueue_that_raises_inserts_nothing(
    caller: Caller, other: AsyncConnection
) -> None:
    with pytest.raises(RuntimeError):
        async with abulk_enqueue(conn=caller.conn):
            await PlainJob.aenqueue("never")
            raise RuntimeError("the block fails")
    await caller.commit()
    assert await _count(other) == 0


async def test_inline_aenqueue_awaits_an_async_job_on_the_callers_session(
    caller: Caller, other: AsyncConnection
) -> None:
    with run_mode("inline"):
        job = await AsyncLogJob.aenqueue("inline", conn=caller.conn)
    assert job.id is None and job.db is not None and job.conn is job.db.raw
    assert await _count(other, "conformance_log") == 0  # in the caller's transaction
    await caller.commit()
    rows = await other.execute("SELECT job_id, tag, event FROM conformance_log")
    assert rows == [(None, "inline", "ran async")]
    assert await _count(other) == 0


async def test_inline_aenqueue_runs_a_sync_job_in_its_thread_on_the_callers_session(
    caller: Caller, other: AsyncConnection
) -> None:
    with run_mode("inline"):
        await SelfResolving.aenqueue("sync inline", conn=caller.conn)
        with pytest.raises(ValueError, match="boom"):
            await FailingInline.aenqueue(conn=caller.conn)  # its error reaches the caller
    await caller.commit()
    rows = await other.execute("SELECT tag FROM conformance_log ORDER BY seq")
    assert rows == [("sync inline",)]


class AsyncLogJob(Job):
    """An ``async def run``: inline mode awaits it with the async session."""

    async def run(self, tag: str) -> None:  # type: ignore[override]
        assert isinstance(self.db, AsyncConnection)
        await self.db.execute(
            "INSERT INTO conformance_log (job_id, tag, event) VALUES (%s, %s, %s)",
            (self.id, tag, "ran async"),
        )


class FailingInline(Job):
    def run(self) -> None:
        raise ValueError("boom")


# -- what enqueue refuses, aenqueue refuses the same way --------------------------------

BAD: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
    ((object(),), {}),
    (({1: "a"},), {}),
    ((float("nan"),), {}),
    (("a\x00b",), {}),
    ((), {"x": {1, 2}}),
    ((), {"priority": 40000}),
    ((), {"priority": "1"}),
    ((), {"queue": "q" * 101}),
    ((), {"tags": list("abcdef")}),
    ((), {"tags": ["t" * 101]}),
    ((), {"run_at": datetime(2030, 1, 1)}),
]


def _refusal(call: Callable[[], Any]) -> tuple[type[BaseException], str]:
    with pytest.raises(InvalidJob) as info:
        call()
    return type(info.value), str(info.value)


async def _arefusal(call: Callable[[], Awaitable[Any]]) -> tuple[type[BaseException], str]:
    with pytest.raises(InvalidJob) as info:
        await call()
    return type(info.value), str(info.value)


@pytest.fixture
def sync_conn(kind: str, adsn: str) -> Iterator[Connection]:
    """A sync session on the database, for enqueue's side of the comparison."""
    conn = sync_side(plugins.get_async_adapter(KINDS[kind][0])).connect(adsn)
    yield conn
    conn.close()


@pytest.mark.parametrize(("args", "options"), BAD, ids=range(len(BAD)))
async def test_bad_input_is_refused_as_enqueue_refuses_it_and_nothing_is_inserted(
    caller: Caller, other: AsyncConnection, sync_conn: Connection,
    args: tuple[Any, ...], options: dict[str, Any],
) -> None:  # fmt: skip
    expected = _refusal(lambda: PlainJob.enqueue(*args, conn=sync_conn, **options))
    assert await _arefusal(lambda: PlainJob.aenqueue(*args, conn=caller.conn, **options)) == (
        expected
    )
    await caller.commit()
    assert await _count(other) == 0


async def test_bad_element_of_aenqueue_many_or_abulk_enqueue_inserts_nothing(
    caller: Caller, other: AsyncConnection, sync_conn: Connection
) -> None:
    many = [[1], [object()]]
    expected = _refusal(lambda: PlainJob.enqueue_many(many, conn=sync_conn))
    assert await _arefusal(lambda: PlainJob.aenqueue_many(many, conn=caller.conn)) == expected
    script = type("Hello", (Job,), {"__module__": "__main__", "run": lambda self: None})
    with pytest.raises(InvalidJob) as sync_info, bulk_enqueue(conn=sync_conn):
        PlainJob.enqueue("kept out too")
        script.enqueue()
    with pytest.raises(InvalidJob) as async_info:
        async with abulk_enqueue(conn=caller.conn):
            await PlainJob.aenqueue("kept out too")
            await script.aenqueue()
    assert str(async_info.value) == str(sync_info.value)
    assert "a name no worker can resolve" in str(async_info.value)
    await caller.commit()
    assert await _count(other) == 0


# -- connections aenqueue does not take --------------------------------------------------


async def test_aenqueue_without_a_connection_is_a_clear_error() -> None:
    with pytest.raises(ConfigurationError, match="aenqueue needs a connection: pass conn="):
        await PlainJob.aenqueue(1)


async def test_unknown_connection_type_names_installed_adapters() -> None:
    with pytest.raises(ConfigurationError, match="installed adapters"):
        await PlainJob.aenqueue(1, conn=object())


async def test_each_form_names_the_other_for_the_other_kind_of_connection(
    kind: str, caller: Caller, adsn: str
) -> None:
    with pytest.raises(ConfigurationError, match="use aenqueue"):
        PlainJob.enqueue(1, conn=caller.conn)
    if kind == "psycopg" and "psycopg" in plugins.adapters():
        import psycopg

        with psycopg.connect(adsn) as raw, pytest.raises(ConfigurationError, match="use enqueue"):
            await PlainJob.aenqueue(1, conn=raw)


async def test_inline_enqueue_of_an_async_job_names_aenqueue() -> None:
    with run_mode("inline"), pytest.raises(ConfigurationError, match="aenqueue"):
        AsyncLogJob.enqueue("x")


# -- tasks and bulk blocks ---------------------------------------------------------------


async def test_tasks_started_in_abulk_enqueue_are_collected_until_it_ends(
    caller: Caller, other: AsyncConnection, kind: str, adsn: str
) -> None:
    late = asyncio.Event()
    own = await plugins.get_async_adapter(KINDS[kind][0]).aconnect(adsn)

    async def enqueue_late() -> None:
        await late.wait()
        await PlainJob.aenqueue("late", conn=own)  # after the block: inserted, not lost

    async with abulk_enqueue(conn=caller.conn) as pending:
        await asyncio.gather(*(PlainJob.aenqueue(f"g{i}") for i in range(3)))
        straggler = asyncio.create_task(enqueue_late())
    assert sorted(j.args[0] for j in pending) == ["g0", "g1", "g2"]
    late.set()
    await straggler
    await own.close()
    assert await _tags(other) == ["late"]
    await caller.commit()
    assert sorted(await _tags(other)) == ["g0", "g1", "g2", "late"]


# -- SQLAlchemy specifics -----------------------------------------------------------------


async def test_sqlalchemy_aenqueue_conn_runs_statements_in_the_session(
    kind: str, caller: Caller, other: AsyncConnection
) -> None:
    if not kind.startswith("sqlalchemy"):
        pytest.skip("SQLAlchemy only")
    from que_core.contrib.sqlalchemy import aenqueue_conn

    qc = await aenqueue_conn(caller.conn)
    await qc.execute("INSERT INTO accounts VALUES (%s)", (7,))
    with pytest.raises(RuntimeError):
        async with qc.atransaction():  # a savepoint: begin_nested
            await qc.execute("INSERT INTO accounts VALUES (%s)", (8,))
            raise RuntimeError
    assert await qc.execute("SELECT id FROM accounts") == [(7,)]
    await caller.rollback()
    assert await _count(other, "accounts") == 0
    with pytest.raises(ConfigurationError, match="AsyncSession or AsyncConnection"):
        await aenqueue_conn(object())


async def test_sqlalchemy_engines_and_sync_objects_are_refused_clearly(
    kind: str, adsn: str
) -> None:
    if not kind.startswith("sqlalchemy"):
        pytest.skip("SQLAlchemy only")
    sa = pytest.importorskip("sqlalchemy")
    from sqlalchemy.ext.asyncio import create_async_engine
    from sqlalchemy.orm import Session

    driver = KINDS[kind][0]
    engine = create_async_engine(sqlalchemy_url(adsn, driver), poolclass=sa.pool.NullPool)
    try:
        with pytest.raises(ConfigurationError, match="not an AsyncEngine"):
            await PlainJob.aenqueue(1, conn=engine)
        with Session() as session, pytest.raises(ConfigurationError, match="enqueue takes it"):
            await PlainJob.aenqueue(1, conn=session)
    finally:
        await engine.dispose()
