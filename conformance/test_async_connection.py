"""Connection-level conformance of the async side: the
:class:`~que_core.connection.AsyncAdapter` and
:class:`~que_core.connection.AsyncConnection` protocols against a real server.

The contract is the sync one (``test_connection.py``) with ``await``; these
tests mirror those, and add what only an event loop can show (a wait for
notifications leaves the loop free). An adapter without an async side has
every test here declared unsupported.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from conformance.fixtures import (
    LATENCY_BOUND,
    POLL_INTERVAL,
    WAIT_EARLY,
    WAIT_SLACK,
    abackend_pid,
    acollect,
    ascalar,
    aterminate,
    await_until,
    missing_database,
    quote_ident,
)
from conformance.test_connection import TEXTS
from que_core import errors, plugins
from que_core.connection import AsyncAdapter, AsyncConnection, Connection

AConnect = Callable[[], Awaitable[AsyncConnection]]
asyncio_test = pytest.mark.asyncio


async def _table(conn: AsyncConnection) -> None:
    await conn.execute("CREATE TABLE items (id bigint PRIMARY KEY, note text)")


async def _ids(conn: AsyncConnection) -> list[int]:
    return [row[0] for row in await conn.execute("SELECT id FROM items ORDER BY id")]


async def _caller_and_other(aconnect: AConnect) -> tuple[AsyncConnection, AsyncConnection]:
    """The caller's session and another one, the items table made."""
    caller, other = await aconnect(), await aconnect()
    await _table(caller)
    return caller, other


def _awrapped(async_adapter: AsyncAdapter, raw: Any) -> AsyncConnection:
    wrapped = async_adapter.awrap(raw)
    assert wrapped is not None, f"{async_adapter.name} did not wrap {raw!r}"
    return wrapped


# -- the adapter and its connections -------------------------------------------


def test_async_adapter_is_registered_under_its_name(async_adapter: AsyncAdapter) -> None:
    assert isinstance(async_adapter, AsyncAdapter)
    assert plugins.async_adapters()[async_adapter.name] is async_adapter
    assert plugins.get_async_adapter(async_adapter.name) is async_adapter


@asyncio_test
async def test_async_connect_returns_an_open_async_connection(aconn: AsyncConnection) -> None:
    assert isinstance(aconn, AsyncConnection)
    anything: object = aconn
    assert not isinstance(anything, Connection)  # never taken for a sync one
    assert aconn.raw is not None
    assert aconn.closed is False
    assert await aconn.execute("SELECT 1") == [(1,)]


@asyncio_test
async def test_async_connect_failure_raises_cannot_connect_without_the_password(
    async_adapter: AsyncAdapter, adb_dsn: str
) -> None:
    secret = "conformance-s3cret"
    dsn = missing_database(adb_dsn, secret)
    with pytest.raises(errors.CannotConnect) as info:
        await async_adapter.aconnect(dsn)
    assert secret not in str(info.value)


@asyncio_test
async def test_async_connect_to_a_closed_port_raises_cannot_connect(
    async_adapter: AsyncAdapter,
) -> None:
    with pytest.raises(errors.CannotConnect):
        await async_adapter.aconnect("postgresql://nobody@127.0.0.1:1/nowhere?connect_timeout=5")


@asyncio_test
async def test_async_a_dsn_the_driver_cannot_read_raises_configuration_error(
    async_adapter: AsyncAdapter,
) -> None:
    secret = "conformance-s3cret"
    with pytest.raises(errors.ConfigurationError) as info:
        await async_adapter.aconnect(f"host=127.0.0.1 port=1 password={secret} sslmod=require")
    assert "sslmod" in str(info.value)
    assert secret not in str(info.value)


@asyncio_test
async def test_async_close_twice_is_harmless(aconn: AsyncConnection) -> None:
    await aconn.close()
    await aconn.close()
    assert aconn.closed is True


@asyncio_test
async def test_async_execute_on_a_closed_connection_raises_connection_lost(
    aconn: AsyncConnection,
) -> None:
    await aconn.close()
    with pytest.raises(errors.ConnectionLost):
        await aconn.execute("SELECT 1")


# -- statements, parameters and results --------------------------------------------


@asyncio_test
async def test_async_statements_without_rows_return_an_empty_list(aconn: AsyncConnection) -> None:
    assert await aconn.execute("CREATE TABLE t (id bigint)") == []
    assert await aconn.execute("INSERT INTO t VALUES (%s)", [1]) == []
    assert await aconn.execute("UPDATE t SET id = id + 1") == []
    assert await aconn.execute("SELECT id FROM t WHERE id < 0") == []


@asyncio_test
async def test_async_rows_are_tuples(aconn: AsyncConnection) -> None:
    await aconn.execute("CREATE TABLE t (id bigint, note text)")
    rows = await aconn.execute("INSERT INTO t VALUES (1, 'a'), (2, 'b') RETURNING id, note")
    assert rows == [(1, "a"), (2, "b")]
    assert all(type(row) is tuple for row in rows)


@asyncio_test
async def test_async_parameters_bind_in_order(aconn: AsyncConnection) -> None:
    values = list(range(40))
    sql = "SELECT " + ", ".join(["%s::int"] * len(values))
    assert await aconn.execute(sql, values) == [tuple(values)]


def _zone(**offset: int) -> timezone:
    return timezone(timedelta(**offset))


ROUND_TRIPS: list[tuple[str, Any]] = [
    ("text", None),
    ("bigint", None),
    ("boolean", True),
    ("boolean", False),
    *[("bigint", v) for v in (0, 1, -1, 2**31 - 1, 2**31, -(2**31) - 1, 2**53 + 1, 2**63 - 1)],
    ("bigint", -(2**63)),
    ("smallint", -(2**15)),
    ("int", -(2**31)),
    *[("double precision", v) for v in (0.0, 0.5, -1.25, 1e300, -2.5e-300, math.inf, -math.inf)],
    *[("text", v) for v in TEXTS],
    ("timestamptz", datetime(2024, 2, 29, 23, 59, 59, 123456, tzinfo=timezone.utc)),
    ("timestamptz", datetime(2001, 1, 1, 0, 0, 0, 1, tzinfo=_zone(hours=5, minutes=45))),
    ("timestamptz", datetime(1999, 12, 31, 22, 30, tzinfo=_zone(hours=-3, minutes=-30))),
    ("bigint[]", [1, -2, 2**40, 2**63 - 1]),
    ("text[]", TEXTS),
    ("bigint[]", []),
    ("text[]", []),
]


@pytest.mark.parametrize(("cast", "value"), ROUND_TRIPS, ids=range(len(ROUND_TRIPS)))
@asyncio_test
async def test_async_parameter_and_result_types(
    aconn: AsyncConnection, cast: str, value: Any
) -> None:
    got = await ascalar(aconn, f"SELECT %s::{cast}", value)
    assert got == value and type(got) is type(value)
    if isinstance(value, datetime):
        assert got.tzinfo is not None


@asyncio_test
async def test_async_float_nan_parameter_and_result(aconn: AsyncConnection) -> None:
    assert math.isnan(await ascalar(aconn, "SELECT %s::double precision", math.nan))


@asyncio_test
async def test_async_int_results_of_every_integer_type(aconn: AsyncConnection) -> None:
    sql = "SELECT 7::smallint, 7::int, 7::bigint, count(*) FROM (VALUES (1)) v"
    row = (await aconn.execute(sql))[0]
    assert row == (7, 7, 7, 1)
    assert all(type(v) is int for v in row)


@asyncio_test
async def test_async_int_parameter_compared_with_a_bigint_column(aconn: AsyncConnection) -> None:
    await _table(aconn)
    await aconn.execute("INSERT INTO items (id) VALUES (%s), (%s)", [2**40, 5])
    assert await aconn.execute("SELECT id FROM items WHERE id = %s", [2**40]) == [(2**40,)]


@asyncio_test
async def test_async_text_parameter_stored_and_read_back(aconn: AsyncConnection) -> None:
    await _table(aconn)
    for i, text in enumerate(TEXTS):
        await aconn.execute("INSERT INTO items VALUES (%s, %s)", [i, text])
    rows = await aconn.execute("SELECT note FROM items ORDER BY id")
    assert [r[0] for r in rows] == TEXTS


@asyncio_test
async def test_async_one_megabyte_of_unicode_text(aconn: AsyncConnection) -> None:
    piece = "żółw 🐢 \\ ' % $1 "
    value = piece * (1024 * 1024 // len(piece.encode()) + 1)
    sql = "SELECT length(%s::text), octet_length(%s::text)"
    assert await aconn.execute(sql, [value, value]) == [(len(value), len(value.encode()))]
    assert await ascalar(aconn, "SELECT %s::text", value) == value


@pytest.mark.parametrize("zone", ["UTC", "Asia/Kathmandu", "America/St_Johns"])
@asyncio_test
async def test_async_timestamptz_result_in_any_session_time_zone(
    aconn: AsyncConnection, zone: str
) -> None:
    await aconn.execute(f"SET TIME ZONE '{zone}'")
    got = await ascalar(aconn, "SELECT '2024-07-01 12:34:56.789+00'::timestamptz")
    assert got == datetime(2024, 7, 1, 12, 34, 56, 789000, tzinfo=timezone.utc)
    assert got.tzinfo is not None


@asyncio_test
async def test_async_now_is_an_aware_datetime_close_to_ours(aconn: AsyncConnection) -> None:
    got = await ascalar(aconn, "SELECT now()")
    assert abs(got - datetime.now(timezone.utc)) < timedelta(minutes=5)


@asyncio_test
async def test_async_json_passed_as_text_and_read_back_as_text(aconn: AsyncConnection) -> None:
    value = {
        "text": "quote ' dq \" backslash \\ percent % dollar $1 ż 😀 \n",
        "nested": {"list": [1, 2.5, None, True, False, {"deep": [[], {}]}], "empty": {}},
        "big": 2**53 + 1,
    }
    text = await ascalar(aconn, "SELECT %s::jsonb::text", json.dumps(value))
    assert isinstance(text, str) and json.loads(text) == value
    got = await ascalar(aconn, "SELECT (%s::jsonb) -> 'nested' ->> 'empty'", json.dumps(value))
    assert got == "{}"
    assert json.loads(await ascalar(aconn, "SELECT %s::json::text", json.dumps(value))) == value


@asyncio_test
async def test_async_json_array_stored_and_read_back_as_text(aconn: AsyncConnection) -> None:
    await aconn.execute("CREATE TABLE docs (body jsonb NOT NULL)")
    value = [{"a": [1, "two", None]}, [], "ünï", 3]
    await aconn.execute("INSERT INTO docs VALUES (%s::jsonb)", [json.dumps(value)])
    assert json.loads(await ascalar(aconn, "SELECT body::text FROM docs")) == value


@asyncio_test
async def test_async_array_parameter_with_any(aconn: AsyncConnection) -> None:
    await _table(aconn)
    await aconn.execute("INSERT INTO items (id) SELECT generate_series(1, 10)")
    sql = "SELECT id FROM items WHERE id = ANY(%s::bigint[]) ORDER BY id"
    assert await aconn.execute(sql, [[3, 7]]) == [(3,), (7,)]


@asyncio_test
async def test_async_array_results(aconn: AsyncConnection) -> None:
    assert await aconn.execute(
        "SELECT ARRAY[1, 2]::bigint[], ARRAY['a', 'b c']::text[], '{}'::bigint[], '{}'::text[]"
    ) == [([1, 2], ["a", "b c"], [], [])]


@asyncio_test
async def test_async_several_statements_without_parameters(aconn: AsyncConnection) -> None:
    await aconn.execute(
        "CREATE TABLE a (id int); CREATE TABLE b (note text);\n"
        "INSERT INTO b VALUES ('x;y'); -- a comment; with a semicolon\n"
        "COMMENT ON TABLE a IS $$semi;colon$$;"
    )
    assert await aconn.execute("SELECT note, obj_description('a'::regclass) FROM b") == [
        ("x;y", "semi;colon")
    ]


@asyncio_test
async def test_async_one_statement_with_semicolons_in_it_returns_its_rows(
    aconn: AsyncConnection,
) -> None:
    sql = "SELECT 'a;b', \"x;y\".c, $q$c;d$q$ FROM (VALUES (1)) AS \"x;y\"(c); -- done;"
    assert await aconn.execute(sql) == [("a;b", 1, "c;d")]


# -- transactions -------------------------------------------------------------------


@asyncio_test
async def test_async_execute_outside_a_transaction_commits_at_once(aconnect: AConnect) -> None:
    conn, other = await aconnect(), await aconnect()
    await _table(conn)
    await conn.execute("INSERT INTO items (id) VALUES (1)")
    assert await _ids(other) == [1]


@asyncio_test
async def test_async_transaction_commits_on_success(aconnect: AConnect) -> None:
    conn, other = await aconnect(), await aconnect()
    await _table(conn)
    async with conn.atransaction():
        await conn.execute("INSERT INTO items (id) VALUES (1)")
        assert await _ids(other) == []  # not before the commit
    assert await _ids(other) == [1]


@asyncio_test
async def test_async_transaction_rolls_back_on_exception(aconn: AsyncConnection) -> None:
    await _table(aconn)
    boom = RuntimeError("boom")
    with pytest.raises(RuntimeError) as info:
        async with aconn.atransaction():
            await aconn.execute("INSERT INTO items (id) VALUES (1)")
            raise boom
    assert info.value is boom
    assert await _ids(aconn) == []


@asyncio_test
async def test_async_transaction_rolls_back_when_its_task_is_cancelled(
    aconnect: AConnect,
) -> None:
    conn, other = await aconnect(), await aconnect()
    await _table(conn)
    started = asyncio.Event()

    async def body() -> None:
        async with conn.atransaction():
            await conn.execute("INSERT INTO items (id) VALUES (1)")
            started.set()
            await asyncio.sleep(30)

    task = asyncio.create_task(body())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await _ids(other) == []
    assert await conn.execute("SELECT 1") == [(1,)]  # and the session is usable
    assert await _ids(conn) == []


@asyncio_test
async def test_async_transaction_rolls_back_on_database_error(aconn: AsyncConnection) -> None:
    await _table(aconn)
    await aconn.execute("INSERT INTO items (id) VALUES (1)")
    with pytest.raises(errors.UniqueViolation):
        async with aconn.atransaction():
            await aconn.execute("INSERT INTO items (id) VALUES (2)")
            await aconn.execute("INSERT INTO items (id) VALUES (1)")
    assert await _ids(aconn) == [1]
    assert aconn.closed is False


@asyncio_test
async def test_async_transaction_whose_error_was_swallowed_raises_on_commit(
    aconn: AsyncConnection,
) -> None:
    await _table(aconn)
    with pytest.raises(errors.DatabaseError) as info:
        async with aconn.atransaction():
            await aconn.execute("INSERT INTO items (id) VALUES (1)")
            with pytest.raises(errors.DatabaseError):
                await aconn.execute("SELECT 1 / 0")
    assert info.value.sqlstate == "25P02"
    assert await _ids(aconn) == []


@asyncio_test
async def test_async_nested_transaction_rolls_back_to_its_savepoint(
    aconn: AsyncConnection,
) -> None:
    await _table(aconn)
    async with aconn.atransaction():
        await aconn.execute("INSERT INTO items (id) VALUES (1)")
        with pytest.raises(RuntimeError):
            async with aconn.atransaction():
                await aconn.execute("INSERT INTO items (id) VALUES (2)")
                raise RuntimeError
        await aconn.execute("INSERT INTO items (id) VALUES (3)")
    assert await _ids(aconn) == [1, 3]


@asyncio_test
async def test_async_nested_transaction_recovers_from_a_database_error(
    aconn: AsyncConnection,
) -> None:
    await _table(aconn)
    async with aconn.atransaction():
        await aconn.execute("INSERT INTO items (id) VALUES (1)")
        with pytest.raises(errors.UniqueViolation):
            async with aconn.atransaction():
                await aconn.execute("INSERT INTO items (id) VALUES (1)")
        await aconn.execute("INSERT INTO items (id) VALUES (2)")
    assert await _ids(aconn) == [1, 2]


@asyncio_test
async def test_async_outer_rollback_discards_committed_nested_transactions(
    aconn: AsyncConnection,
) -> None:
    await _table(aconn)
    with pytest.raises(RuntimeError):
        async with aconn.atransaction():
            async with aconn.atransaction():
                await aconn.execute("INSERT INTO items (id) VALUES (1)")
                async with aconn.atransaction():
                    await aconn.execute("INSERT INTO items (id) VALUES (2)")
            raise RuntimeError
    assert await _ids(aconn) == []


@asyncio_test
async def test_async_transaction_after_a_failed_one_works(aconn: AsyncConnection) -> None:
    await _table(aconn)
    with pytest.raises(errors.DatabaseError):
        async with aconn.atransaction():
            await aconn.execute("SELECT * FROM no_such_table")
    async with aconn.atransaction():
        await aconn.execute("INSERT INTO items (id) VALUES (1)")
    assert await _ids(aconn) == [1]


# -- wrapping the caller's connection ------------------------------------------------


@asyncio_test
async def test_async_awrap_returns_none_for_other_objects(
    async_adapter: AsyncAdapter, aconn: AsyncConnection
) -> None:
    assert async_adapter.awrap(object()) is None
    assert async_adapter.awrap("postgresql://localhost/db") is None
    assert async_adapter.awrap(aconn) is None  # a que-core wrapper is not a driver connection


@asyncio_test
async def test_async_awrap_connection_picks_this_adapter_by_type(
    async_adapter: AsyncAdapter, aconn: AsyncConnection
) -> None:
    wrapped = await plugins.awrap_connection(aconn.raw)
    assert wrapped.raw is aconn.raw
    assert type(wrapped) is type(async_adapter.awrap(aconn.raw))
    assert await wrapped.execute("SELECT 1") == [(1,)]
    assert await plugins.awrap_connection(wrapped) is wrapped  # wrapped already
    others = [n for n, a in plugins.async_adapters().items() if a is not async_adapter]
    assert [n for n in others if plugins.get_async_adapter(n).awrap(aconn.raw)] == []
    with pytest.raises(errors.ConfigurationError, match="use aenqueue"):
        plugins.wrap_connection(aconn.raw)  # no sync adapter takes an async connection


@asyncio_test
async def test_async_closing_the_wrapper_leaves_the_connection_open(
    async_adapter: AsyncAdapter, aconn: AsyncConnection
) -> None:
    wrapped = _awrapped(async_adapter, aconn.raw)
    await wrapped.close()
    assert aconn.closed is False
    assert await aconn.execute("SELECT 1") == [(1,)]


@asyncio_test
async def test_async_wrapped_execute_joins_the_callers_transaction(
    async_adapter: AsyncAdapter, aconnect: AConnect
) -> None:
    caller, other = await _caller_and_other(aconnect)
    await caller.execute("BEGIN")
    wrapped = _awrapped(async_adapter, caller.raw)
    await wrapped.execute("INSERT INTO items (id) VALUES (1)")
    assert await _ids(other) == []
    await caller.execute("ROLLBACK")
    assert await _ids(caller) == []


@asyncio_test
async def test_async_wrapped_transaction_is_a_savepoint_in_the_callers_transaction(
    async_adapter: AsyncAdapter, aconnect: AConnect
) -> None:
    caller, other = await _caller_and_other(aconnect)
    await caller.execute("BEGIN")
    wrapped = _awrapped(async_adapter, caller.raw)
    async with wrapped.atransaction():
        await wrapped.execute("INSERT INTO items (id) VALUES (1)")
    assert await _ids(other) == []  # the wrapper did not commit the caller's transaction
    assert await _ids(caller) == [1]
    await caller.execute("ROLLBACK")
    assert await _ids(caller) == []


@asyncio_test
async def test_async_wrapped_transaction_rollback_keeps_the_callers_earlier_writes(
    async_adapter: AsyncAdapter, aconn: AsyncConnection
) -> None:
    await _table(aconn)
    await aconn.execute("BEGIN")
    await aconn.execute("INSERT INTO items (id) VALUES (1)")
    wrapped = _awrapped(async_adapter, aconn.raw)
    with pytest.raises(RuntimeError):
        async with wrapped.atransaction():
            await wrapped.execute("INSERT INTO items (id) VALUES (2)")
            raise RuntimeError
    await aconn.execute("COMMIT")
    assert await _ids(aconn) == [1]


@asyncio_test
async def test_async_wrapped_transaction_on_an_idle_connection_commits(
    async_adapter: AsyncAdapter, aconnect: AConnect
) -> None:
    caller, other = await _caller_and_other(aconnect)
    wrapped = _awrapped(async_adapter, caller.raw)
    async with wrapped.atransaction():
        await wrapped.execute("INSERT INTO items (id) VALUES (1)")
    assert await _ids(other) == [1]


# -- errors --------------------------------------------------------------------------


@asyncio_test
async def test_async_unique_violation(aconn: AsyncConnection) -> None:
    await _table(aconn)
    await aconn.execute("INSERT INTO items (id) VALUES (1)")
    with pytest.raises(errors.UniqueViolation) as info:
        await aconn.execute("INSERT INTO items (id) VALUES (%s)", [1])
    assert info.value.sqlstate == "23505"
    assert isinstance(info.value, errors.IntegrityError)
    assert "items_pkey" in str(info.value)
    assert aconn.closed is False and await _ids(aconn) == [1]


@asyncio_test
async def test_async_check_violation(aconn: AsyncConnection) -> None:
    await aconn.execute("CREATE TABLE t (n int CHECK (n > 0))")
    with pytest.raises(errors.CheckViolation) as info:
        await aconn.execute("INSERT INTO t VALUES (%s)", [-1])
    assert info.value.sqlstate == "23514"


@pytest.mark.parametrize(
    ("sql", "sqlstate"),
    [("SELECT 1 / 0", "22012"), ("SELEC 1", "42601"), ("SELECT * FROM nowhere", "42P01")],
)
@asyncio_test
async def test_async_other_server_errors_are_database_errors(
    aconn: AsyncConnection, sql: str, sqlstate: str
) -> None:
    with pytest.raises(errors.DatabaseError) as info:
        await aconn.execute(sql)
    assert type(info.value) is errors.DatabaseError
    assert info.value.sqlstate == sqlstate
    assert await aconn.execute("SELECT 1") == [(1,)]


@asyncio_test
async def test_async_terminated_session_raises_connection_lost(aconnect: AConnect) -> None:
    victim = await aconnect()
    await aterminate(victim, await aconnect())
    with pytest.raises(errors.ConnectionLost):
        await victim.execute("SELECT 1")
    assert victim.closed is True
    await victim.close()


@asyncio_test
async def test_async_terminated_session_in_a_transaction_raises_connection_lost(
    aconnect: AConnect,
) -> None:
    victim, other = await aconnect(), await aconnect()
    with pytest.raises(errors.ConnectionLost):
        async with victim.atransaction():
            await victim.execute("SELECT 1")
            await aterminate(victim, other)
            await victim.execute("SELECT 1")
    assert victim.closed is True


@asyncio_test
async def test_async_terminated_listener_raises_connection_lost(aconnect: AConnect) -> None:
    victim = await aconnect()
    await victim.execute("LISTEN conformance")
    await aterminate(victim, await aconnect())
    with pytest.raises(errors.ConnectionLost):
        await acollect(victim, 1, within=5)


# -- session advisory locks ------------------------------------------------------------

KEY = 2**62 + 54321


async def _try_lock(conn: AsyncConnection, key: int = KEY) -> bool:
    return bool(await ascalar(conn, "SELECT pg_try_advisory_lock(%s::bigint)", key))


@asyncio_test
async def test_async_advisory_lock_is_invisible_to_another_session(aconnect: AConnect) -> None:
    a, b = await aconnect(), await aconnect()
    assert await _try_lock(a)
    assert not await _try_lock(b)
    assert await _try_lock(a)  # re-entrant in its own session


@asyncio_test
async def test_async_advisory_lock_is_held_across_transactions(aconnect: AConnect) -> None:
    a, b = await aconnect(), await aconnect()
    with pytest.raises(RuntimeError):
        async with a.atransaction():
            assert await _try_lock(a)
            raise RuntimeError
    async with a.atransaction():
        await a.execute("SELECT 1")
    assert not await _try_lock(b)
    assert await ascalar(a, "SELECT pg_advisory_unlock(%s::bigint)", KEY) is True


@asyncio_test
async def test_async_advisory_lock_is_released_on_close(aconnect: AConnect) -> None:
    a, b = await aconnect(), await aconnect()
    assert await _try_lock(a)
    await a.close()
    await await_until(lambda: _try_lock(b))


@asyncio_test
async def test_async_advisory_lock_is_released_when_the_backend_is_terminated(
    aconnect: AConnect,
) -> None:
    a, b = await aconnect(), await aconnect()
    assert await _try_lock(a)
    await aterminate(a, b)
    assert await _try_lock(b)


# -- LISTEN / NOTIFY ------------------------------------------------------------------


async def _listener(aconnect: AConnect, channel: str = "conformance") -> AsyncConnection:
    conn = await aconnect()
    await conn.execute(f"LISTEN {quote_ident(channel)}")
    return conn


@asyncio_test
async def test_async_notification_payload_arrives_intact(aconnect: AConnect) -> None:
    listener, sender = await _listener(aconnect), await aconnect()
    payloads = [*TEXTS, json.dumps({"queue": "dé'fault", "n": [1]}), "é" * 3999]
    for payload in payloads:
        await sender.execute("SELECT pg_notify(%s, %s)", ["conformance", payload])
    got = await acollect(listener, len(payloads))
    assert [n.payload for n in got] == payloads
    assert {n.channel for n in got} == {"conformance"}
    assert {n.pid for n in got} == {await abackend_pid(sender)}


@asyncio_test
async def test_async_notification_channel_name_arrives_intact(aconnect: AConnect) -> None:
    channel = 'Que.Chan "x" ż'
    listener, sender = await _listener(aconnect, channel), await aconnect()
    await sender.execute("SELECT pg_notify(%s, 'hi')", [channel])
    got = await acollect(listener, 1)
    assert [(n.channel, n.payload) for n in got] == [(channel, "hi")]


@asyncio_test
async def test_async_unlisten_stops_notifications(aconnect: AConnect) -> None:
    listener, sender = await _listener(aconnect), await aconnect()
    await listener.execute("LISTEN other")
    await listener.execute("UNLISTEN conformance")
    await sender.execute("NOTIFY conformance, 'dropped'")
    await sender.execute("NOTIFY other, 'kept'")
    assert [n.payload for n in await acollect(listener, 1)] == ["kept"]
    await listener.execute("UNLISTEN *")
    await sender.execute("NOTIFY other, 'dropped too'")
    assert await acollect(listener, 1, within=0.5) == []


@asyncio_test
async def test_async_notifications_with_zero_timeout_return_at_once(aconnect: AConnect) -> None:
    listener = await _listener(aconnect)
    start = time.monotonic()
    assert await listener.notifications(0) == []
    assert time.monotonic() - start < WAIT_SLACK


@asyncio_test
async def test_async_wait_returns_on_time_when_nothing_comes(aconnect: AConnect) -> None:
    listener, timeout = await _listener(aconnect), 0.5
    start = time.monotonic()
    assert await listener.notifications(timeout) == []
    elapsed = time.monotonic() - start
    assert timeout - WAIT_EARLY <= elapsed <= timeout + WAIT_SLACK


@asyncio_test
async def test_async_wait_leaves_the_event_loop_free(aconnect: AConnect) -> None:
    listener = await _listener(aconnect)
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick())
    try:
        assert await listener.notifications(0.5) == []
    finally:
        ticker.cancel()
    assert ticks >= 10  # about 50 when the loop is free; none if the wait blocked it


@asyncio_test
async def test_async_wait_wakes_when_a_notification_comes(aconnect: AConnect) -> None:
    listener, sender = await _listener(aconnect), await aconnect()

    async def send() -> float:
        await asyncio.sleep(0.2)
        sent_at = time.monotonic()
        await sender.execute("NOTIFY conformance, 'wake'")
        return sent_at

    sending = asyncio.create_task(send())
    got = await listener.notifications(10.0)
    received_at = time.monotonic()
    assert [n.payload for n in got] == ["wake"]
    assert received_at - await sending < LATENCY_BOUND


@asyncio_test
async def test_async_polling_with_zero_timeout_delivers(aconnect: AConnect) -> None:
    listener, sender = await _listener(aconnect), await aconnect()
    await sender.execute("NOTIFY conformance, 'polled'")
    deadline = time.monotonic() + 10
    got: list[Any] = []
    while not got and time.monotonic() < deadline:
        got = await listener.notifications(0)
        await asyncio.sleep(POLL_INTERVAL)
    assert [n.payload for n in got] == ["polled"]


@asyncio_test
async def test_async_burst_of_a_thousand_notifications_all_arrive(aconnect: AConnect) -> None:
    listener, sender = await _listener(aconnect), await aconnect()
    await sender.execute(
        "SELECT pg_notify('conformance', i::text) FROM generate_series(1, %s::int) AS i", [1000]
    )
    got = await acollect(listener, 1000, within=20)
    assert [n.payload for n in got] == [str(i) for i in range(1, 1001)]


@asyncio_test
async def test_async_notifications_arriving_during_other_statements_are_kept(
    aconnect: AConnect,
) -> None:
    listener, sender = await _listener(aconnect), await aconnect()
    await sender.execute("NOTIFY conformance, 'meanwhile'")
    await asyncio.sleep(0.2)
    for _ in range(3):
        async with listener.atransaction():
            await listener.execute("SELECT 1")
    assert [n.payload for n in await acollect(listener, 1, within=5)] == ["meanwhile"]


@asyncio_test
async def test_async_notification_from_a_transaction_arrives_after_its_commit(
    aconnect: AConnect,
) -> None:
    listener, sender = await _listener(aconnect), await aconnect()
    async with sender.atransaction():
        await sender.execute("NOTIFY conformance, 'committed'")
        assert await acollect(listener, 1, within=0.3) == []
    assert [n.payload for n in await acollect(listener, 1)] == ["committed"]


# -- copy_in: COPY ... FROM STDIN ----------------------------------------------------------


@asyncio_test
async def test_async_copy_in_sends_rows_of_every_value_kind(aconn: AsyncConnection) -> None:
    await aconn.execute("CREATE TABLE copied (n bigint, t text, at timestamptz, j jsonb)")
    when = datetime(2030, 5, 6, 7, 8, 9, 123456, tzinfo=timezone(timedelta(hours=2)))
    texts = ["plain", "tab\\there", "new\nline", "back\\slash", "cr\rhere", "\\N", "", "é 😀"]
    await aconn.copy_in(
        "COPY copied (n, t, at, j) FROM STDIN",
        [(i, text, when if i else None, json.dumps({"v": text})) for i, text in enumerate(texts)]
        + [(2**62, None, None, None)],
    )
    rows = await aconn.execute("SELECT n, t, at, j::text FROM copied ORDER BY n")
    assert [r[1] for r in rows] == [*texts, None]
    assert rows[1][2] == when and rows[0][2] is None
    assert [json.loads(r[3])["v"] for r in rows[:-1]] == texts
    assert rows[-1][0] == 2**62


@asyncio_test
async def test_async_copy_in_joins_the_callers_transaction(aconnect: AConnect) -> None:
    conn, other = await aconnect(), await aconnect()
    await conn.execute("CREATE TABLE copied (n bigint)")
    with pytest.raises(RuntimeError):
        async with conn.atransaction():
            await conn.copy_in("COPY copied (n) FROM STDIN", [(1,), (2,)])
            assert await conn.execute("SELECT count(*) FROM copied") == [(2,)]
            raise RuntimeError("roll it back")
    assert await other.execute("SELECT count(*) FROM copied") == [(0,)]


@asyncio_test
async def test_async_copy_in_errors_are_que_errors(aconn: AsyncConnection) -> None:
    await aconn.execute("CREATE TABLE copied (n bigint NOT NULL)")
    with pytest.raises(errors.DatabaseError) as raised:
        await aconn.copy_in("COPY copied (n) FROM STDIN", [(1,), (None,)])
    assert raised.value.sqlstate == "23502"  # not_null_violation
    assert await aconn.execute("SELECT count(*) FROM copied") == [(0,)]


# -- reset: a session a job left in a transaction ----------------------------------------


@asyncio_test
async def test_async_reset_of_a_session_in_autocommit_does_nothing(
    aconn: AsyncConnection,
) -> None:
    assert await aconn.reset() is False
    assert await aconn.execute("SELECT 1") == [(1,)]


@pytest.mark.parametrize("how", ["begin", "failed", "write"])
@asyncio_test
async def test_async_reset_rolls_back_what_a_job_left_open(
    aconnect: AConnect, how: str
) -> None:
    items, other = await aconnect(), await aconnect()
    await _table(items)
    await items.execute("BEGIN")
    if how == "failed":
        with pytest.raises(errors.DatabaseError):
            await items.execute("SELECT 1 / 0")
    elif how == "write":
        await items.execute("INSERT INTO items (id) VALUES (1)")
    assert await items.reset() is True
    assert await items.reset() is False
    assert await _ids(other) == []  # nothing it left open committed
    await items.execute("INSERT INTO items (id) VALUES (2)")  # autocommit again
    assert await _ids(other) == [2]


@asyncio_test
async def test_async_reset_turns_autocommit_back_on(aconnect: AConnect) -> None:
    items, other = await aconnect(), await aconnect()
    await _table(items)
    set_autocommit = getattr(items.raw, "set_autocommit", None)
    if set_autocommit is None:
        pytest.skip("not applicable: the driver's connection has no autocommit switch")
    await set_autocommit(False)
    assert await items.reset() is True
    await items.execute("INSERT INTO items (id) VALUES (3)")
    assert await _ids(other) == [3]
