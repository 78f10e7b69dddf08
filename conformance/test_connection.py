"""Connection-level conformance: what the core needs from every adapter.

Each test checks one behaviour of the :class:`~que_core.connection.Adapter`
and :class:`~que_core.connection.Connection` protocols against a real server.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from conformance.fixtures import (
    LATENCY_BOUND,
    POLL_INTERVAL,
    WAIT_EARLY,
    WAIT_SLACK,
    backend_pid,
    collect,
    missing_database,
    quote_ident,
    scalar,
    terminate,
    wait_until,
)
from que_core import errors, plugins
from que_core.connection import Adapter, Connection, Notification

Connect = Callable[[], Connection]

TEXTS = [
    "",
    "it's",
    'say "hi"',
    "back\\slash \\n \\\\",
    "100% %s %% %(name)s",
    "$1 $2 ? :name",
    "line\nbreak\ttab\r",
    "zażółć gęślą jaźń — 日本語 — 🎉",
    "NULL",
    "null",
    "{a,b}",
    " padded ",
]


def _table(conn: Connection) -> None:
    conn.execute("CREATE TABLE items (id bigint PRIMARY KEY, note text)")


def _caller_and_other(connect: Connect) -> tuple[Connection, Connection]:
    """The caller's session and another one, the items table made."""
    caller, other = connect(), connect()
    _table(caller)
    return caller, other


def _wrapped(adapter: Adapter, raw: Any) -> Connection:
    wrapped = adapter.wrap(raw)
    assert wrapped is not None, f"{adapter.name} did not wrap {raw!r}"
    return wrapped


def _ids(conn: Connection) -> list[int]:
    return [row[0] for row in conn.execute("SELECT id FROM items ORDER BY id")]


# -- the adapter and its connections -------------------------------------------


def test_adapter_is_registered_under_its_name(adapter: Adapter) -> None:
    assert isinstance(adapter, Adapter)
    assert plugins.adapters()[adapter.name] is adapter


def test_connect_returns_an_open_connection(adapter: Adapter, conn: Connection) -> None:
    assert isinstance(conn, Connection)
    assert conn.raw is not None
    assert conn.closed is False
    assert conn.execute("SELECT 1") == [(1,)]


def test_connect_failure_raises_cannot_connect_without_the_password(
    adapter: Adapter, db_dsn: str
) -> None:
    secret = "conformance-s3cret"
    dsn = missing_database(db_dsn, secret)
    with pytest.raises(errors.CannotConnect) as info:
        adapter.connect(dsn)
    assert secret not in str(info.value)


def test_connect_to_a_closed_port_raises_cannot_connect(adapter: Adapter) -> None:
    with pytest.raises(errors.CannotConnect):
        adapter.connect("postgresql://nobody@127.0.0.1:1/nowhere?connect_timeout=5")


def test_a_dsn_the_driver_cannot_read_raises_configuration_error(adapter: Adapter) -> None:
    # A configuration error (que exits 2), not a connection failure (3).
    secret = "conformance-s3cret"
    with pytest.raises(errors.ConfigurationError) as info:
        adapter.connect(f"host=127.0.0.1 port=1 password={secret} sslmod=require")
    assert "sslmod" in str(info.value)
    assert secret not in str(info.value)


def test_close_twice_is_harmless(conn: Connection) -> None:
    conn.close()
    conn.close()
    assert conn.closed is True


def test_execute_on_a_closed_connection_raises_connection_lost(conn: Connection) -> None:
    conn.close()
    with pytest.raises(errors.ConnectionLost):
        conn.execute("SELECT 1")


# -- statements, parameters and results --------------------------------------------


def test_statements_without_rows_return_an_empty_list(conn: Connection) -> None:
    assert conn.execute("CREATE TABLE t (id bigint)") == []
    assert conn.execute("INSERT INTO t VALUES (%s)", [1]) == []
    assert conn.execute("UPDATE t SET id = id + 1") == []
    assert conn.execute("SELECT id FROM t WHERE id < 0") == []


def test_rows_are_tuples(conn: Connection) -> None:
    conn.execute("CREATE TABLE t (id bigint, note text)")
    assert conn.execute("INSERT INTO t VALUES (1, 'a'), (2, 'b') RETURNING id, note") == [
        (1, "a"),
        (2, "b"),
    ]


def test_parameters_bind_in_order(conn: Connection) -> None:
    values = list(range(40))
    sql = "SELECT " + ", ".join(["%s::int"] * len(values))
    assert conn.execute(sql, values) == [tuple(values)]


def test_null_parameter_and_result(conn: Connection) -> None:
    assert conn.execute("SELECT %s::text IS NULL, %s::bigint, NULL", [None, None]) == [
        (True, None, None)
    ]


def test_bool_parameter_and_result(conn: Connection) -> None:
    row = conn.execute("SELECT %s::boolean, %s::boolean, 1 = 1", [True, False])[0]
    assert row == (True, False, True)
    assert all(type(v) is bool for v in row)


@pytest.mark.parametrize(
    "value", [0, 1, -1, 2**31 - 1, 2**31, -(2**31) - 1, 2**53 + 1, 2**63 - 1, -(2**63)]
)
def test_int_parameter_and_result(conn: Connection, value: int) -> None:
    got = scalar(conn, "SELECT %s::bigint", value)
    assert got == value and type(got) is int


@pytest.mark.parametrize(("cast", "value"), [("smallint", -(2**15)), ("int", -(2**31))])
def test_smallest_int_cast_to_a_narrower_type(conn: Connection, cast: str, value: int) -> None:
    assert scalar(conn, f"SELECT %s::{cast}", value) == value


def test_int_results_of_every_integer_type(conn: Connection) -> None:
    row = conn.execute("SELECT 7::smallint, 7::int, 7::bigint, count(*) FROM (VALUES (1)) v")[0]
    assert row == (7, 7, 7, 1)
    assert all(type(v) is int for v in row)


def test_int_parameter_compared_with_a_bigint_column(conn: Connection) -> None:
    _table(conn)
    conn.execute("INSERT INTO items (id) VALUES (%s), (%s)", [2**40, 5])
    assert conn.execute("SELECT id FROM items WHERE id = %s", [2**40]) == [(2**40,)]


@pytest.mark.parametrize("value", [0.0, 0.5, -1.25, 1e300, -2.5e-300, math.inf, -math.inf])
def test_float_parameter_and_result(conn: Connection, value: float) -> None:
    got = scalar(conn, "SELECT %s::double precision", value)
    assert got == value and type(got) is float


def test_float_nan_parameter_and_result(conn: Connection) -> None:
    assert math.isnan(scalar(conn, "SELECT %s::double precision", math.nan))


@pytest.mark.parametrize("value", TEXTS, ids=range(len(TEXTS)))
def test_text_parameter_and_result(conn: Connection, value: str) -> None:
    assert scalar(conn, "SELECT %s::text", value) == value


def test_text_parameter_stored_and_read_back(conn: Connection) -> None:
    _table(conn)
    for i, text in enumerate(TEXTS):
        conn.execute("INSERT INTO items VALUES (%s, %s)", [i, text])
    assert [r[0] for r in conn.execute("SELECT note FROM items ORDER BY id")] == TEXTS


def test_one_megabyte_of_unicode_text(conn: Connection) -> None:
    value = "żółw 🐢 \\ ' % $1 " * (1024 * 1024 // len("żółw 🐢 \\ ' % $1 ".encode()) + 1)
    assert len(value.encode()) > 1024 * 1024
    assert conn.execute("SELECT length(%s::text), octet_length(%s::text)", [value, value]) == [
        (len(value), len(value.encode()))
    ]
    assert scalar(conn, "SELECT %s::text", value) == value


@pytest.mark.parametrize(
    "value",
    [
        datetime(2024, 2, 29, 23, 59, 59, 123456, tzinfo=timezone.utc),
        datetime(2001, 1, 1, 0, 0, 0, 1, tzinfo=timezone(timedelta(hours=5, minutes=45))),
        datetime(1999, 12, 31, 22, 30, tzinfo=timezone(timedelta(hours=-3, minutes=-30))),
    ],
    ids=["utc", "plus-0545", "minus-0330"],
)
def test_aware_datetime_parameter_and_result(conn: Connection, value: datetime) -> None:
    got = scalar(conn, "SELECT %s::timestamptz", value)
    assert isinstance(got, datetime) and got.tzinfo is not None
    assert got == value


@pytest.mark.parametrize("zone", ["UTC", "Asia/Kathmandu", "America/St_Johns"])
def test_timestamptz_result_in_any_session_time_zone(conn: Connection, zone: str) -> None:
    conn.execute(f"SET TIME ZONE '{zone}'")
    got = scalar(conn, "SELECT '2024-07-01 12:34:56.789+00'::timestamptz")
    assert got == datetime(2024, 7, 1, 12, 34, 56, 789000, tzinfo=timezone.utc)
    assert got.tzinfo is not None


def test_now_is_an_aware_datetime_close_to_ours(conn: Connection) -> None:
    got = scalar(conn, "SELECT now()")
    assert abs(got - datetime.now(timezone.utc)) < timedelta(minutes=5)


def test_json_passed_as_text_and_read_back_as_text(conn: Connection) -> None:
    value = {
        "text": "quote ' dq \" backslash \\ percent % dollar $1 ż 😀 \n",
        "nested": {"list": [1, 2.5, None, True, False, {"deep": [[], {}]}], "empty": {}},
        "big": 2**53 + 1,
    }
    text = scalar(conn, "SELECT %s::jsonb::text", json.dumps(value))
    assert isinstance(text, str) and json.loads(text) == value
    assert scalar(conn, "SELECT (%s::jsonb) -> 'nested' ->> 'empty'", json.dumps(value)) == "{}"


def test_json_array_stored_and_read_back_as_text(conn: Connection) -> None:
    conn.execute("CREATE TABLE docs (body jsonb NOT NULL)")
    value = [{"a": [1, "two", None]}, [], "ünï", 3]
    conn.execute("INSERT INTO docs VALUES (%s::jsonb)", [json.dumps(value)])
    assert json.loads(scalar(conn, "SELECT body::text FROM docs")) == value


def test_int_array_parameter_and_result(conn: Connection) -> None:
    value = [1, -2, 2**40, 2**63 - 1]
    assert scalar(conn, "SELECT %s::bigint[]", value) == value


def test_text_array_parameter_and_result(conn: Connection) -> None:
    assert scalar(conn, "SELECT %s::text[]", TEXTS) == TEXTS


def test_empty_array_parameters(conn: Connection) -> None:
    assert conn.execute("SELECT %s::bigint[], %s::text[]", [[], []]) == [([], [])]


def test_array_parameter_with_any(conn: Connection) -> None:
    _table(conn)
    conn.execute("INSERT INTO items (id) SELECT generate_series(1, 10)")
    rows = conn.execute("SELECT id FROM items WHERE id = ANY(%s::bigint[]) ORDER BY id", [[3, 7]])
    assert rows == [(3,), (7,)]


def test_array_results(conn: Connection) -> None:
    assert conn.execute(
        "SELECT ARRAY[1, 2]::bigint[], ARRAY['a', 'b c']::text[], '{}'::bigint[], '{}'::text[]"
    ) == [([1, 2], ["a", "b c"], [], [])]


# -- transactions -------------------------------------------------------------------


def test_execute_outside_a_transaction_commits_at_once(connect: Connect) -> None:
    conn, other = connect(), connect()
    _table(conn)
    conn.execute("INSERT INTO items (id) VALUES (1)")
    assert _ids(other) == [1]


def test_transaction_commits_on_success(connect: Connect) -> None:
    conn, other = connect(), connect()
    _table(conn)
    with conn.transaction():
        conn.execute("INSERT INTO items (id) VALUES (1)")
        assert _ids(other) == []  # not before the commit
    assert _ids(other) == [1]


def test_transaction_rolls_back_on_exception(conn: Connection) -> None:
    _table(conn)
    boom = RuntimeError("boom")
    with pytest.raises(RuntimeError) as info, conn.transaction():
        conn.execute("INSERT INTO items (id) VALUES (1)")
        raise boom
    assert info.value is boom
    assert _ids(conn) == []


def test_transaction_rolls_back_on_database_error(conn: Connection) -> None:
    _table(conn)
    conn.execute("INSERT INTO items (id) VALUES (1)")
    with pytest.raises(errors.UniqueViolation), conn.transaction():
        conn.execute("INSERT INTO items (id) VALUES (2)")
        conn.execute("INSERT INTO items (id) VALUES (1)")
    assert _ids(conn) == [1]
    assert conn.closed is False


def test_transaction_whose_error_was_swallowed_raises_on_commit(conn: Connection) -> None:
    """A block that caught a database error cannot commit: it raises instead of
    rolling back silently."""
    _table(conn)
    with pytest.raises(errors.DatabaseError) as info, conn.transaction():
        conn.execute("INSERT INTO items (id) VALUES (1)")
        with pytest.raises(errors.DatabaseError):
            conn.execute("SELECT 1 / 0")
    assert info.value.sqlstate == "25P02"
    assert _ids(conn) == []


def test_nested_transaction_rolls_back_to_its_savepoint(conn: Connection) -> None:
    _table(conn)
    with conn.transaction():
        conn.execute("INSERT INTO items (id) VALUES (1)")
        with pytest.raises(RuntimeError), conn.transaction():
            conn.execute("INSERT INTO items (id) VALUES (2)")
            raise RuntimeError
        conn.execute("INSERT INTO items (id) VALUES (3)")
    assert _ids(conn) == [1, 3]


def test_nested_transaction_recovers_from_a_database_error(conn: Connection) -> None:
    _table(conn)
    with conn.transaction():
        conn.execute("INSERT INTO items (id) VALUES (1)")
        with pytest.raises(errors.UniqueViolation), conn.transaction():
            conn.execute("INSERT INTO items (id) VALUES (1)")
        conn.execute("INSERT INTO items (id) VALUES (2)")
    assert _ids(conn) == [1, 2]


def test_outer_rollback_discards_committed_nested_transactions(conn: Connection) -> None:
    _table(conn)
    with pytest.raises(RuntimeError), conn.transaction():
        with conn.transaction():
            conn.execute("INSERT INTO items (id) VALUES (1)")
            with conn.transaction():
                conn.execute("INSERT INTO items (id) VALUES (2)")
        raise RuntimeError
    assert _ids(conn) == []


def test_transaction_after_a_failed_one_works(conn: Connection) -> None:
    _table(conn)
    with pytest.raises(errors.DatabaseError), conn.transaction():
        conn.execute("SELECT * FROM no_such_table")
    with conn.transaction():
        conn.execute("INSERT INTO items (id) VALUES (1)")
    assert _ids(conn) == [1]


# -- wrapping the caller's connection ------------------------------------------------


def test_wrap_returns_none_for_other_objects(adapter: Adapter) -> None:
    assert adapter.wrap(object()) is None
    assert adapter.wrap("postgresql://localhost/db") is None


def test_wrap_connection_picks_this_adapter_by_type(adapter: Adapter, conn: Connection) -> None:
    wrapped = plugins.wrap_connection(conn.raw)
    assert wrapped.raw is conn.raw
    assert type(wrapped) is type(adapter.wrap(conn.raw))
    assert wrapped.execute("SELECT 1") == [(1,)]
    others = [a.name for a in plugins.adapters().values() if a is not adapter]
    assert [name for name in others if plugins.get_adapter(name).wrap(conn.raw)] == []


def test_closing_the_wrapper_leaves_the_connection_open(adapter: Adapter, conn: Connection) -> None:
    wrapped = _wrapped(adapter, conn.raw)
    wrapped.close()
    assert conn.closed is False
    assert conn.execute("SELECT 1") == [(1,)]


def test_wrapped_execute_joins_the_callers_transaction(adapter: Adapter, connect: Connect) -> None:
    caller, other = _caller_and_other(connect)
    caller.execute("BEGIN")
    wrapped = _wrapped(adapter, caller.raw)
    wrapped.execute("INSERT INTO items (id) VALUES (1)")
    assert _ids(other) == []
    caller.execute("ROLLBACK")
    assert _ids(caller) == []


def test_wrapped_transaction_is_a_savepoint_in_the_callers_transaction(
    adapter: Adapter, connect: Connect
) -> None:
    caller, other = _caller_and_other(connect)
    caller.execute("BEGIN")
    wrapped = _wrapped(adapter, caller.raw)
    with wrapped.transaction():
        wrapped.execute("INSERT INTO items (id) VALUES (1)")
    assert _ids(other) == []  # the wrapper did not commit the caller's transaction
    assert _ids(caller) == [1]
    caller.execute("ROLLBACK")
    assert _ids(caller) == []


def test_wrapped_transaction_rollback_keeps_the_callers_earlier_writes(
    adapter: Adapter, conn: Connection
) -> None:
    _table(conn)
    conn.execute("BEGIN")
    conn.execute("INSERT INTO items (id) VALUES (1)")
    wrapped = _wrapped(adapter, conn.raw)
    with pytest.raises(RuntimeError), wrapped.transaction():
        wrapped.execute("INSERT INTO items (id) VALUES (2)")
        raise RuntimeError
    conn.execute("COMMIT")
    assert _ids(conn) == [1]


def test_wrapped_transaction_on_an_idle_connection_commits(
    adapter: Adapter, connect: Connect
) -> None:
    caller, other = _caller_and_other(connect)
    wrapped = _wrapped(adapter, caller.raw)
    with wrapped.transaction():
        wrapped.execute("INSERT INTO items (id) VALUES (1)")
    assert _ids(other) == [1]


# -- errors --------------------------------------------------------------------------


def test_unique_violation(conn: Connection) -> None:
    _table(conn)
    conn.execute("INSERT INTO items (id) VALUES (1)")
    with pytest.raises(errors.UniqueViolation) as info:
        conn.execute("INSERT INTO items (id) VALUES (%s)", [1])
    assert info.value.sqlstate == "23505"
    assert isinstance(info.value, errors.IntegrityError)
    assert "items_pkey" in str(info.value)
    assert conn.closed is False and _ids(conn) == [1]


def test_check_violation(conn: Connection) -> None:
    conn.execute("CREATE TABLE t (n int CHECK (n > 0))")
    with pytest.raises(errors.CheckViolation) as info:
        conn.execute("INSERT INTO t VALUES (%s)", [-1])
    assert info.value.sqlstate == "23514"
    assert isinstance(info.value, errors.IntegrityError)


@pytest.mark.parametrize(
    ("sql", "sqlstate"),
    [("SELECT 1 / 0", "22012"), ("SELEC 1", "42601"), ("SELECT * FROM nowhere", "42P01")],
)
def test_other_server_errors_are_database_errors(conn: Connection, sql: str, sqlstate: str) -> None:
    with pytest.raises(errors.DatabaseError) as info:
        conn.execute(sql)
    assert type(info.value) is errors.DatabaseError
    assert info.value.sqlstate == sqlstate
    assert conn.execute("SELECT 1") == [(1,)]


def test_terminated_session_raises_connection_lost(connect: Connect) -> None:
    victim = connect()
    terminate(victim, connect())
    with pytest.raises(errors.ConnectionLost):
        victim.execute("SELECT 1")
    assert victim.closed is True
    victim.close()


def test_terminated_session_in_a_transaction_raises_connection_lost(connect: Connect) -> None:
    victim, other = connect(), connect()
    with pytest.raises(errors.ConnectionLost), victim.transaction():
        victim.execute("SELECT 1")
        terminate(victim, other)
        victim.execute("SELECT 1")
    assert victim.closed is True


def test_terminated_listener_raises_connection_lost(adapter: Adapter, connect: Connect) -> None:
    victim = connect()
    victim.execute("LISTEN conformance")
    terminate(victim, connect())
    with pytest.raises(errors.ConnectionLost):
        collect(victim, 1, within=5)


# -- session advisory locks ------------------------------------------------------------

KEY = 2**62 + 12345


def _try_lock(conn: Connection, key: int = KEY) -> bool:
    return bool(scalar(conn, "SELECT pg_try_advisory_lock(%s::bigint)", key))


def test_advisory_lock_is_invisible_to_another_session(connect: Connect) -> None:
    a, b = connect(), connect()
    assert _try_lock(a)
    assert not _try_lock(b)
    assert _try_lock(a)  # re-entrant in its own session


def test_advisory_lock_is_held_across_transactions(connect: Connect) -> None:
    a, b = connect(), connect()
    with pytest.raises(RuntimeError), a.transaction():
        assert _try_lock(a)  # taken in a transaction that rolls back
        raise RuntimeError
    with a.transaction():
        a.execute("SELECT 1")
    assert not _try_lock(b)
    assert scalar(a, "SELECT pg_advisory_unlock(%s::bigint)", KEY) is True  # same session


def test_advisory_lock_is_released_on_close(connect: Connect) -> None:
    a, b = connect(), connect()
    assert _try_lock(a)
    a.close()
    wait_until(lambda: _try_lock(b), within=10)


def test_advisory_lock_is_released_when_the_backend_is_terminated(connect: Connect) -> None:
    a, b = connect(), connect()
    assert _try_lock(a)
    terminate(a, b)
    assert _try_lock(b)


# -- LISTEN / NOTIFY ------------------------------------------------------------------


def _listener(connect: Connect, channel: str = "conformance") -> Connection:
    conn = connect()
    conn.execute(f"LISTEN {quote_ident(channel)}")
    return conn


def test_notification_payload_arrives_intact(adapter: Adapter, connect: Connect) -> None:
    listener, sender = _listener(connect), connect()
    payloads = [*TEXTS, json.dumps({"queue": "dé'fault", "n": [1]}), "é" * 3999]
    for payload in payloads:
        sender.execute("SELECT pg_notify(%s, %s)", ["conformance", payload])
    got = collect(listener, len(payloads))
    assert [n.payload for n in got] == payloads
    assert {n.channel for n in got} == {"conformance"}
    assert {n.pid for n in got} == {backend_pid(sender)}


def test_notification_channel_name_arrives_intact(adapter: Adapter, connect: Connect) -> None:
    channel = 'Que.Chan "x" ż'
    listener, sender = _listener(connect, channel), connect()
    sender.execute("SELECT pg_notify(%s, 'hi')", [channel])
    assert [(n.channel, n.payload) for n in collect(listener, 1)] == [(channel, "hi")]


def test_notifications_with_zero_timeout_return_at_once(connect: Connect) -> None:
    listener = _listener(connect)
    start = time.monotonic()
    assert listener.notifications(0) == []
    assert time.monotonic() - start < WAIT_SLACK


def test_blocking_wait_returns_on_time_when_nothing_comes(connect: Connect) -> None:
    listener, timeout = _listener(connect), 0.5
    start = time.monotonic()
    assert listener.notifications(timeout) == []
    elapsed = time.monotonic() - start
    assert timeout - WAIT_EARLY <= elapsed <= timeout + WAIT_SLACK


def test_blocking_wait_wakes_when_a_notification_comes(connect: Connect) -> None:
    listener, sender = _listener(connect), connect()
    sent = threading.Event()

    def send() -> None:
        time.sleep(0.2)
        sender.execute("NOTIFY conformance, 'wake'")
        sent.set()

    thread = threading.Thread(target=send)
    start = time.monotonic()
    thread.start()
    got = listener.notifications(10.0)
    elapsed = time.monotonic() - start
    thread.join()
    assert [n.payload for n in got] == ["wake"]
    assert elapsed < 0.2 + LATENCY_BOUND


def test_polling_with_zero_timeout_delivers(adapter: Adapter, connect: Connect) -> None:
    listener, sender = _listener(connect), connect()
    sender.execute("NOTIFY conformance, 'polled'")
    deadline = time.monotonic() + 10
    got: list[Notification] = []
    while not got and time.monotonic() < deadline:
        got = listener.notifications(0)
        time.sleep(POLL_INTERVAL)
    assert [n.payload for n in got] == ["polled"]


def test_notification_latency_is_below_the_bound(adapter: Adapter, connect: Connect) -> None:
    listener, sender = _listener(connect), connect()
    sent_at: list[float] = []

    def send() -> None:
        time.sleep(0.2)
        sent_at.append(time.monotonic())
        sender.execute("NOTIFY conformance, 'now'")

    thread = threading.Thread(target=send)
    thread.start()
    got = collect(listener, 1, within=10)
    received_at = time.monotonic()
    thread.join()
    assert [n.payload for n in got] == ["now"]
    assert received_at - sent_at[0] < LATENCY_BOUND


def test_burst_of_a_thousand_notifications_all_arrive(adapter: Adapter, connect: Connect) -> None:
    listener, sender = _listener(connect), connect()
    sender.execute(
        "SELECT pg_notify('conformance', i::text) FROM generate_series(1, %s::int) AS i", [1000]
    )
    got = collect(listener, 1000, within=20)
    assert [n.payload for n in got] == [str(i) for i in range(1, 1001)]


def test_notifications_arriving_during_other_statements_are_kept(
    adapter: Adapter, connect: Connect
) -> None:
    listener, sender = _listener(connect), connect()
    sender.execute("NOTIFY conformance, 'meanwhile'")
    time.sleep(0.2)  # it reaches the listener's socket ...
    for _ in range(3):  # ... and the driver reads it while running these
        with listener.transaction():
            listener.execute("SELECT 1")
    assert [n.payload for n in collect(listener, 1, within=5)] == ["meanwhile"]


def test_notification_from_a_transaction_arrives_after_its_commit(
    adapter: Adapter, connect: Connect
) -> None:
    listener, sender = _listener(connect), connect()
    with sender.transaction():
        sender.execute("NOTIFY conformance, 'committed'")
        assert collect(listener, 1, within=0.3) == []
    assert [n.payload for n in collect(listener, 1)] == ["committed"]


# -- reset: a session a job left in a transaction ----------------------------------------


def test_reset_of_a_session_in_autocommit_does_nothing(conn: Connection) -> None:
    assert conn.reset() is False
    assert conn.execute("SELECT 1") == [(1,)]


@pytest.mark.parametrize("how", ["begin", "failed", "write"])
def test_reset_rolls_back_what_a_job_left_open(
    conn: Connection, connect: Connect, how: str
) -> None:
    _table(conn)
    items, other = conn, connect()
    items.execute("BEGIN")
    if how == "failed":
        with pytest.raises(errors.DatabaseError):
            items.execute("SELECT 1 / 0")
    elif how == "write":
        items.execute("INSERT INTO items (id) VALUES (1)")
    assert items.reset() is True
    assert items.reset() is False
    assert _ids(other) == []  # nothing it left open committed
    items.execute("INSERT INTO items (id) VALUES (2)")  # autocommit again: on its own
    assert _ids(other) == [2]


def test_reset_turns_autocommit_back_on(conn: Connection, connect: Connect) -> None:
    _table(conn)
    items = conn
    if not hasattr(items.raw, "autocommit"):
        pytest.skip("not applicable: the driver's connection has no autocommit switch")
    items.raw.autocommit = False
    assert items.reset() is True
    items.execute("INSERT INTO items (id) VALUES (3)")
    assert _ids(connect()) == [3]


# -- copy_in: COPY ... FROM STDIN ----------------------------------------------------------


def test_copy_in_sends_rows_of_every_value_kind(conn: Connection) -> None:
    conn.execute("CREATE TABLE copied (n bigint, t text, at timestamptz, j jsonb)")
    when = datetime(2030, 5, 6, 7, 8, 9, 123456, tzinfo=timezone(timedelta(hours=2)))
    texts = ["plain", "tab\\there", "new\nline", "back\\slash", "cr\rhere", "\\N", "", "é 😀"]
    conn.copy_in("COPY copied (n, t, at, j) FROM STDIN",
                 [(i, text, when if i else None, json.dumps({"v": text}))
                  for i, text in enumerate(texts)] + [(2**62, None, None, None)])
    rows = conn.execute("SELECT n, t, at, j::text FROM copied ORDER BY n")
    assert [r[1] for r in rows] == [*texts, None]
    assert rows[1][2] == when and rows[0][2] is None
    assert [json.loads(r[3])["v"] for r in rows[:-1]] == texts
    assert rows[-1][0] == 2**62


def test_copy_in_joins_the_callers_transaction(conn: Connection, connect: Connect) -> None:
    conn.execute("CREATE TABLE copied (n bigint)")
    other = connect()
    with pytest.raises(RuntimeError), conn.transaction():
        conn.copy_in("COPY copied (n) FROM STDIN", [(1,), (2,)])
        assert conn.execute("SELECT count(*) FROM copied") == [(2,)]
        raise RuntimeError("roll it back")
    assert other.execute("SELECT count(*) FROM copied") == [(0,)]


def test_copy_in_errors_are_que_errors_naming_the_row(conn: Connection) -> None:
    conn.execute("CREATE TABLE copied (n bigint NOT NULL)")
    with pytest.raises(errors.DatabaseError) as raised:
        conn.copy_in("COPY copied (n) FROM STDIN", [(1,), (None,)])
    assert raised.value.sqlstate == "23502"  # not_null_violation
    assert conn.execute("SELECT count(*) FROM copied") == [(0,)]  # the statement's own
