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
    with_database,
)
from que_core.errors import QueError
from que_core.sql import q, quoted

__all__ = [
    "adapter_names",
    "create_database", "drop_database", "server_dsn", "temporary_database", "with_database",
]


def adapter_names() -> list[str]:
    """The adapters tests run on: ``$QUE_TEST_ADAPTERS`` (comma-separated), else
    every installed one, psycopg first. The first is the one tests that do not
    depend on the driver use (and the ``que_database`` fixture)."""
    from que_core import plugins

    wanted = [n.strip() for n in os.environ.get("QUE_TEST_ADAPTERS", "").split(",") if n.strip()]
    if wanted:
        return wanted
    return sorted(plugins.installed_adapters(), key=lambda n: (n != "psycopg", n))


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

def _empty(adapter: Adapter, server: str, db: str) -> bool:
    """End every session on *db* and drop everything in it; False if that failed."""
    name = database_name(db)
    try:
        admin = adapter.connect(server)
        try:
            deadline = time.monotonic() + 5
            while admin.execute(q("terminate_database_sessions"), (name,))[0][0]:
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.01)
            if admin.execute(q("database_sessions"), (name,))[0][0]:
                return False
        finally:
            admin.close()
        conn = adapter.connect(db)
        try:
            schemas = [r[0] for r in conn.execute(q("user_schemas"))]
            for schema in schemas:
                conn.execute(quoted(conn, "drop_schema_sql", schema))
            conn.execute(q("new_public_schema"))
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
