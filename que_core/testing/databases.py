"""Throwaway databases for tests and benchmarks, reused within a process.

The server is ``$QUE_TEST_DSN`` (or ``$DATABASE_URL``) when set, else the
embedded PostgreSQL. Each database gets a unique name and is dropped after.
"""

from __future__ import annotations

import atexit
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from que_core.blocking import sync_side
from que_core.connection import Adapter, AsyncAdapter
from que_core.databases import (
    create_database,
    database_name,
    drop_database,
    quote_ident,
    with_database,
)
from que_core.errors import QueError

__all__ = [
    "create_database", "drop_database", "server_dsn", "temporary_database", "with_database",
]


def server_dsn() -> str:
    """The DSN of the server tests run against (any database on it)."""
    dsn = os.environ.get("QUE_TEST_DSN") or os.environ.get("DATABASE_URL")
    if dsn:
        return dsn
    from que_core import embedded

    return embedded.start()


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
    name = database_name(db)
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
