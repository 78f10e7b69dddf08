"""que_core.testing's async forms: ``await adrain(conn)`` on each async
adapter's connection, and ``inline()`` running an ``async def`` job from a
sync ``enqueue``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import pytest_asyncio

from conformance.jobs import FailingTwice, SelfResolving
from que_core import plugins
from que_core.connection import Connection
from que_core.errors import ConfigurationError
from que_core.testing import adrain, databases, drain, inline
from tests.helpers import job_count, log_tags, logged_database


@pytest.fixture
def sdb() -> Iterator[tuple[str, Connection]]:
    with logged_database() as db:
        yield db


@pytest_asyncio.fixture(params=[
    n for n in databases.adapter_names() if n in plugins.async_adapters()])
async def araw(request: pytest.FixtureRequest, sdb: tuple[str, Connection]
               ) -> AsyncIterator[Any]:
    """A raw async driver connection (autocommit) of each async adapter."""
    conn = await plugins.get_async_adapter(request.param).aconnect(sdb[0])
    yield conn.raw
    await conn.close()


@pytest.mark.asyncio
async def test_adrain_works_async_and_sync_jobs(sdb: Any, araw: Any, ajobs: Any) -> None:
    _, db = sdb
    ajobs.AsyncRecordJob.enqueue("a", conn=db.raw)
    SelfResolving.enqueue("s", conn=db.raw, priority=200)
    ajobs.AsyncPlainJob.enqueue("kind", conn=db.raw, priority=300)
    ran = await adrain(araw)
    assert [j.job_class for j in ran] == [ajobs.AsyncRecordJob.job_name, SelfResolving.job_name,
                                          ajobs.AsyncPlainJob.job_name]
    assert log_tags(db) == ["a", "s"]
    assert log_tags(db, type(araw).__module__.partition(".")[0]) == ["kind"]
    assert job_count(db) == 0


@pytest.mark.asyncio
async def test_adrain_raises_a_jobs_error_after_recording_it(sdb: Any, araw: Any) -> None:
    _, db = sdb
    FailingTwice.enqueue("f", conn=db.raw)
    with pytest.raises(ValueError, match="boom f"):
        await adrain(araw)
    assert db.execute("SELECT error_count FROM que_jobs") == [(1,)]


def test_sync_drain_refuses_an_async_job_naming_adrain(sdb: Any, ajobs: Any) -> None:
    _, db = sdb
    ajobs.AsyncRecordJob.enqueue("a", conn=db.raw)
    with pytest.raises(Exception, match=r"async def.*adrain"):
        drain(db)
    assert log_tags(db) == []


def test_inline_runs_an_async_job_from_a_sync_enqueue(sdb: Any, ajobs: Any) -> None:
    _, db = sdb
    with inline():
        job = ajobs.AsyncRecordJob.enqueue("inline", conn=db.raw)
    assert job.id is None
    assert log_tags(db) == ["inline"]
    assert job_count(db) == 0


@pytest.mark.asyncio
async def test_inline_sync_enqueue_of_an_async_job_inside_a_loop_says_aenqueue(
        sdb: Any, ajobs: Any) -> None:
    _, db = sdb
    with inline(), pytest.raises(ConfigurationError, match="aenqueue"):
        ajobs.AsyncRecordJob.enqueue("inline", conn=db.raw)
