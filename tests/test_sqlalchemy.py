"""Enqueueing through SQLAlchemy 2 Sessions and Connections, for each dialect
whose que-core adapter is installed (psycopg, psycopg2, pg8000)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

sa = pytest.importorskip("sqlalchemy")
orm = pytest.importorskip("sqlalchemy.orm")

from conformance.fixtures import wait_until  # noqa: E402
from conformance.jobs import PlainJob  # noqa: E402
from que_core import bulk_enqueue, run_mode  # noqa: E402
from que_core.connection import Adapter, Connection  # noqa: E402
from que_core.contrib.sqlalchemy import enqueue_conn  # noqa: E402
from que_core.errors import ConfigurationError  # noqa: E402
from tests.helpers import job_count, log_tags, sqlalchemy_url  # noqa: E402

# the core meets each driver here
pytestmark = pytest.mark.per_adapter


@pytest.fixture
def engine(adapter: Adapter, dsn: str) -> Iterator[Any]:
    pytest.importorskip(adapter.name)
    e = sa.create_engine(sqlalchemy_url(dsn, adapter.name), poolclass=sa.pool.NullPool)
    yield e
    e.dispose()


def tags(conn: Connection) -> list[str]:
    rows = conn.execute("SELECT args::text FROM que_jobs ORDER BY id")
    return [json.loads(r[0])[0] for r in rows]


def test_session_commit_and_rollback(engine: Any, conn: Connection) -> None:
    with orm.Session(engine) as session:
        PlainJob.enqueue("rolled back", conn=session)
        session.rollback()
        job = PlainJob.enqueue("committed", conn=session)
        assert isinstance(job.id, int)
        assert job_count(conn) == 0  # not committed yet: another session sees nothing
        session.commit()
    assert tags(conn) == ["committed"]


def test_session_begin_block_rolls_back_on_error(engine: Any, conn: Connection) -> None:
    with pytest.raises(RuntimeError), orm.Session(engine) as session, session.begin():
        PlainJob.enqueue("x", conn=session)
        raise RuntimeError("roll back")
    assert job_count(conn) == 0


def test_job_and_orm_rows_share_the_transaction(engine: Any, conn: Connection) -> None:
    meta = sa.MetaData()
    orders = sa.Table("orders", meta, sa.Column("id", sa.Integer, primary_key=True))
    meta.create_all(engine)
    with orm.Session(engine) as session:
        session.execute(orders.insert().values(id=1))
        PlainJob.enqueue("order 1", conn=session)
        session.rollback()
        session.execute(orders.insert().values(id=2))
        PlainJob.enqueue("order 2", conn=session)
        session.commit()
    assert [r[0] for r in conn.execute("SELECT id FROM orders")] == [2]
    assert tags(conn) == ["order 2"]


def test_connection_commit_rollback_and_close(engine: Any, conn: Connection) -> None:
    with engine.connect() as c:
        PlainJob.enqueue("rolled back", conn=c)
        c.rollback()
        PlainJob.enqueue("committed", conn=c)
        c.commit()
        PlainJob.enqueue("never committed", conn=c)  # closed without commit
    assert tags(conn) == ["committed"]
    with engine.begin() as c:
        PlainJob.enqueue("engine.begin", conn=c)
    assert tags(conn) == ["committed", "engine.begin"]


def test_bulk_enqueue_first_in_the_transaction_rolls_back_with_it(
    engine: Any, conn: Connection
) -> None:
    # The bulk insert's own transaction block is a savepoint of the session's:
    # it must never commit the session's transaction early.
    with orm.Session(engine) as session:
        with bulk_enqueue(conn=session) as jobs:
            PlainJob.enqueue("a")
            PlainJob.enqueue("b")
        assert all(isinstance(j.id, int) for j in jobs)
        session.rollback()
    assert job_count(conn) == 0
    with engine.connect() as c:
        PlainJob.enqueue_many([["c"], ["d"]], conn=c)
        c.commit()
    assert tags(conn) == ["c", "d"]


def test_scoped_session(engine: Any, conn: Connection) -> None:
    Scoped = orm.scoped_session(orm.sessionmaker(engine))
    try:
        PlainJob.enqueue("scoped", conn=Scoped)
        Scoped.commit()
    finally:
        Scoped.remove()
    assert tags(conn) == ["scoped"]


def test_enqueue_conn_runs_statements_in_the_session(engine: Any, conn: Connection) -> None:
    with orm.Session(engine) as session:
        qc = enqueue_conn(session)
        qc.execute("CREATE TABLE t (x int)")
        with qc.transaction():
            qc.execute("INSERT INTO t VALUES (%s)", (1,))
        with pytest.raises(RuntimeError), qc.transaction():  # a savepoint, rolled back
            qc.execute("INSERT INTO t VALUES (%s)", (2,))
            raise RuntimeError
        assert qc.execute("SELECT x FROM t") == [(1,)]
        session.rollback()
    assert conn.execute("SELECT to_regclass('t')") == [(None,)]
    with pytest.raises(ConfigurationError, match="Session or Connection"):
        enqueue_conn(object())


def test_engine_is_refused_clearly(engine: Any) -> None:
    with pytest.raises(ConfigurationError, match="not an Engine"):
        PlainJob.enqueue("x", conn=engine)


def test_inline_job_gets_the_driver_connection(engine: Any, db: Connection) -> None:
    with orm.Session(engine) as session, run_mode("inline"):
        job = PlainJob.enqueue("inline", conn=session)
        assert job.conn is session.connection().connection.driver_connection
        session.commit()
    assert log_tags(db) == ["inline"]


def test_worker_runs_jobs_enqueued_through_sqlalchemy(
    engine: Any, db: Connection, que_worker: Any
) -> None:
    with orm.Session(engine) as session:
        for i in range(3):
            PlainJob.enqueue(i, conn=session)
        session.commit()
    que_worker()
    wait_until(lambda: job_count(db) == 0)
    assert sorted(log_tags(db)) == ["0", "1", "2"]
