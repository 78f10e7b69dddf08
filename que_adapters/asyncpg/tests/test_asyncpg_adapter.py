"""asyncpg-specific behaviour the driver-agnostic conformance suite cannot reach:
DSNs as keyword arguments, the application's own codecs and statement cache
on a wrapped connection, pool connections, and the missing sync side."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest
import pytest_asyncio
from que_adapter_asyncpg import ADAPTER, connect_args

from conformance.fixtures import URL, URL_PARTS
from que_core import Job, errors, migrate, plugins
from que_core.blocking import sync_side
from que_core.testing import databases


class PlainJob(Job):
    job_name = "asyncpg_adapter_tests.PlainJob"

    def run(self, *args: object) -> None:
        pass


def test_connect_args_from_a_url() -> None:
    args = connect_args(f"{URL}?application_name=w&connect_timeout=3")
    assert args == {
        **URL_PARTS,
        "database": "app",
        "ssl": "prefer",
        "timeout": 3.0,
        "server_settings": {"application_name": "w"},
    }


def test_connect_args_for_a_unix_socket_and_options() -> None:
    args = connect_args("dbname=app host=/run/pg port=5433 sslmode=disable options='-c x=1'")
    assert (args["host"], args["port"], args["ssl"]) == ("/run/pg", 5433, "disable")
    assert args["server_settings"] == {"x": "1"}


@pytest.mark.parametrize(
    ("dsn", "needle"),
    [
        ("host=h sslmode=sometimes", "sslmode"),
        ("host=h target_session_attrs=any", "target_session_attrs"),
        ("host=h options='--search_path=x'", "--search_path=x"),
    ],
)
def test_what_it_cannot_pass_on_is_a_configuration_error(dsn: str, needle: str) -> None:
    with pytest.raises(errors.ConfigurationError, match=needle):
        connect_args(dsn)


def test_it_has_no_sync_side_and_the_lookups_say_so() -> None:
    assert "asyncpg" in plugins.installed_adapters()
    assert "asyncpg" in plugins.async_adapters() and "asyncpg" not in plugins.adapters()
    with pytest.raises(errors.ConfigurationError, match="'asyncpg' has no sync side"):
        plugins.get_adapter("asyncpg")
    if plugins.adapters():
        assert plugins.get_adapter().name != "asyncpg"  # the default is a sync one
    else:  # asyncpg alone (tox -e asyncpg)
        missing = "no installed que-core adapter has a sync side"
        with pytest.raises(errors.ConfigurationError, match=missing):
            plugins.get_adapter()


def test_que_work_with_asyncpg_runs_async_jobs_on_it_or_is_refused_alone() -> None:
    """`que work --adapter asyncpg` takes asyncpg for the async jobs and an
    installed sync adapter for the rest; with no sync adapter it is refused
    as a configuration error."""
    out = subprocess.run(
        [sys.executable, "-m", "que_core.cli", "work", "--adapter", "asyncpg",
         "--dsn", "postgresql://nobody@127.0.0.1:1/x"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    if any(name != "asyncpg" for name in plugins.adapters()):
        assert out.returncode == 3, out.stderr  # accepted: it fails at connecting
        assert "cannot connect" in out.stderr
    else:  # asyncpg alone (tox -e asyncpg)
        assert out.returncode == 2, out.stderr
        assert "no sync side" in out.stderr


@pytest.fixture
def dsn() -> Iterator[str]:
    with databases.temporary_database(ADAPTER) as dsn:
        conn = sync_side(ADAPTER).connect(dsn)
        migrate(conn)
        conn.close()
        yield dsn


@pytest_asyncio.fixture
async def raw(dsn: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(**connect_args(dsn))
    yield conn
    await conn.close()


async def _stored_args(raw: asyncpg.Connection | asyncpg.pool.PoolConnectionProxy) -> list[str]:
    return [r[0] for r in await raw.fetch("SELECT args::text FROM que_jobs ORDER BY id")]


@pytest.mark.asyncio
async def test_an_application_jsonb_codec_does_not_encode_the_job_twice(
    raw: asyncpg.Connection,
) -> None:
    await raw.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    await PlainJob.aenqueue({"a": [1, "two"]}, conn=raw)
    await PlainJob.aenqueue_many([["bulk"]], conn=raw)
    assert await _stored_args(raw) == ['[{"a": [1, "two"]}]', '["bulk"]']
    # The application's own jsonb statements keep its codec.
    assert await raw.fetchval("SELECT args FROM que_jobs ORDER BY id LIMIT 1") == [
        {"a": [1, "two"]}
    ]


@pytest.mark.asyncio
async def test_a_connection_without_a_statement_cache_works(dsn: str) -> None:
    raw = await asyncpg.connect(**connect_args(dsn), statement_cache_size=0)
    try:
        for i in range(3):
            await PlainJob.aenqueue(i, conn=raw)
        assert await _stored_args(raw) == ["[0]", "[1]", "[2]"]
    finally:
        await raw.close()


@pytest.mark.asyncio
async def test_a_pool_connection_is_wrapped_and_a_released_one_is_closed(dsn: str) -> None:
    pool = await asyncpg.create_pool(**connect_args(dsn), min_size=1, max_size=1)
    try:
        async with pool.acquire() as proxy:
            wrapped = ADAPTER.awrap(proxy)
            assert wrapped is not None and wrapped.raw is proxy
            async with proxy.transaction():
                await PlainJob.aenqueue("pooled", conn=proxy)
        assert wrapped.closed is True  # released: no longer the caller's session
        with pytest.raises(errors.ConnectionLost):
            await wrapped.execute("SELECT 1")
        async with pool.acquire() as again:
            assert await _stored_args(again) == ['["pooled"]']
    finally:
        await pool.close()
