"""Throwaway databases for tests and benchmarks.

The server is ``$QUE_TEST_DSN`` (or ``$DATABASE_URL``) when set, else the
embedded PostgreSQL. Each database gets a unique name and is dropped after.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

from que_core.connection import Adapter


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


def create_database(adapter: Adapter, dsn: str, prefix: str = "que_test") -> str:
    """Create a database with a unique name on *dsn*'s server; return its DSN."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = adapter.connect(dsn)
    try:
        admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        admin.close()
    return with_database(dsn, name)


def drop_database(adapter: Adapter, dsn: str, db_dsn: str) -> None:
    """Drop the database *db_dsn* names, ending its sessions first."""
    name = urlsplit(db_dsn).path.lstrip("/") if "://" in db_dsn else db_dsn.rsplit("=", 1)[1]
    admin = adapter.connect(dsn)
    try:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.close()


@contextmanager
def temporary_database(adapter: Adapter, dsn: str | None = None) -> Iterator[str]:
    """A fresh database for the duration of the block."""
    server = dsn or server_dsn()
    db = create_database(adapter, server)
    try:
        yield db
    finally:
        drop_database(adapter, server, db)
