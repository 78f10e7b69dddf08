"""Small helpers of the tests, on the kit they share with conformance/
(:mod:`conformance.fixtures`: ``scalar``, ``wait_until``, the fixtures)."""

from __future__ import annotations

from typing import Any, TypeVar

from conformance.fixtures import scalar
from que_core.connection import Connection

T = TypeVar("T")


def job_count(conn: Connection) -> int:
    return int(scalar(conn, "SELECT count(*) FROM que_jobs"))


def log_tags(conn: Connection, event: str = "ran") -> list[str]:
    rows = conn.execute("SELECT tag FROM conformance_log WHERE event = %s ORDER BY seq", (event,))
    return [r[0] for r in rows]


def advisory_locks(conn: Connection) -> int:
    return int(
        scalar(
            conn,
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND database = "
            "(SELECT oid FROM pg_database WHERE datname = current_database())",
        )
    )


def sqlalchemy_url(dsn: str, driver: str) -> Any:
    """A SQLAlchemy URL for *dsn* with the dialect of *driver* (psycopg,
    psycopg2, pg8000, asyncpg)."""
    import sqlalchemy as sa

    from que_core.dsn import parse_dsn

    params = parse_dsn(dsn)
    query: dict[str, str] = {}
    host = params.pop("host", None)
    sock = params.pop("unix_sock", None)
    if sock is not None:  # the embedded server: a Unix socket
        if driver == "pg8000":
            query["unix_sock"] = str(sock)
        else:
            query["host"] = str(sock).rsplit("/", 1)[0]
    return sa.engine.URL.create(
        f"postgresql+{driver}",
        username=str(params.pop("user")) if "user" in params else None,
        password=str(params.pop("password")) if "password" in params else None,
        host=str(host) if host else None,
        port=int(params.pop("port")) if "port" in params else None,
        database=str(params.pop("dbname")) if "dbname" in params else None,
        query=query,
    )
