"""Throwaway databases for tests and benchmarks.

The server is ``$QUE_TEST_DSN`` (or ``$DATABASE_URL``) when set, else the
embedded PostgreSQL. Each database gets a unique name and is dropped after.
"""

from __future__ import annotations

import atexit
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from urllib.parse import urlsplit, urlunsplit

from que_core.blocking import sync_side
from que_core.connection import Adapter, AsyncAdapter
from que_core.errors import QueError


def server_dsn() -> str:
    """The DSN of the server tests run against (any database on it)."""
    dsn = os.environ.get("QUE_TEST_DSN") or os.environ.get("DATABASE_URL")
    if dsn:
        return dsn
    from que_core import embedded

    return embedded.start()


def with_database(dsn: str, dbname: str) -> str:
    """*dsn* pointing at database *dbname* instead (URL or key=value form)."""
    if "://" in dsn:
        parts = urlsplit(dsn)
        return urlunsplit(parts._replace(path="/" + dbname))
    return f"{dsn} dbname={dbname}"


def quote_ident(name: str) -> str:
    """*name* as a PostgreSQL identifier (what ``format('%I')`` gives)."""
    return '"' + name.replace('"', '""') + '"'


def create_database(adapter: Adapter, dsn: str, prefix: str = "que_test") -> str:
    """Create a database with a unique name on *dsn*'s server; return its DSN."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = adapter.connect(dsn)
    try:
        admin.execute(f"CREATE DATABASE {quote_ident(name)}")
    finally:
        admin.close()
    return with_database(dsn, name)


def drop_database(adapter: Adapter, dsn: str, db_dsn: str) -> None:
    """Drop the database *db_dsn* names, ending its sessions first."""
    name = urlsplit(db_dsn).path.lstrip("/") if "://" in db_dsn else db_dsn.rsplit("=", 1)[1]
    admin = adapter.connect(dsn)
    try:
        admin.execute(f"DROP DATABASE IF EXISTS {quote_ident(name)} WITH (FORCE)")
    finally:
        admin.close()


#: Databases this process made and emptied again, by server: reusing one is
#: ten times cheaper than CREATE and DROP DATABASE. Dropped at exit.
_idle: dict[str, list[str]] = {}
_made: dict[str, tuple[Adapter, list[str]]] = {}

_ALL_SESSIONS_GONE = """
SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()
"""
_TERMINATE = """
SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
WHERE datname = %s AND pid <> pg_backend_pid()
"""
_USER_SCHEMAS = """
SELECT nspname FROM pg_namespace
WHERE nspname <> 'information_schema' AND left(nspname, 3) <> 'pg_'
"""


def _empty(adapter: Adapter, server: str, db: str) -> bool:
    """End every session on *db* and drop everything in it; False if that failed."""
    name = urlsplit(db).path.lstrip("/") if "://" in db else db.rsplit("=", 1)[1]
    try:
        admin = adapter.connect(server)
        try:
            deadline = time.monotonic() + 5
            while admin.execute(_TERMINATE, (name,))[0][0]:
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.01)
            if admin.execute(_ALL_SESSIONS_GONE, (name,))[0][0]:
                return False
        finally:
            admin.close()
        conn = adapter.connect(db)
        try:
            schemas = [r[0] for r in conn.execute(_USER_SCHEMAS)]
            for schema in schemas:
                conn.execute(f"DROP SCHEMA {quote_ident(schema)} CASCADE")
            conn.execute("CREATE SCHEMA public")
            conn.execute("GRANT ALL ON SCHEMA public TO PUBLIC")
        finally:
            conn.close()
        return True
    except QueError:
        return False


def _drop_idle() -> None:
    for server, (adapter, names) in list(_made.items()):
        for db in names:
            with suppress(QueError):
                drop_database(adapter, server, db)
    _made.clear()
    _idle.clear()


@contextmanager
def temporary_database(adapter: Adapter | AsyncAdapter, dsn: str | None = None) -> Iterator[str]:
    """An empty database of its own for the duration of the block.

    It has a unique name; when the block ends its sessions are ended and its
    contents dropped, and the next block in this process may reuse it. All
    are dropped when the process exits. An adapter without a sync side makes
    and empties it through its async side, on an event loop of its own
    (so not from inside a running loop).
    """
    adapter = sync_side(adapter)
    server = dsn or server_dsn()
    idle = _idle.setdefault(server, [])
    db = idle.pop() if idle else None
    if db is None:
        db = create_database(adapter, server)
        if not _made:
            atexit.register(_drop_idle)
        _made.setdefault(server, (adapter, []))[1].append(db)
    try:
        yield db
    finally:
        if _empty(adapter, server, db):
            idle.append(db)
        else:
            _made[server][1].remove(db)
            drop_database(adapter, server, db)
