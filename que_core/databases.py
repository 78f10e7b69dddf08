"""Create and drop whole databases: the demo's, and the tests'
(:mod:`que_core.testing.databases`)."""

from __future__ import annotations

import uuid
from contextlib import closing
from urllib.parse import urlsplit, urlunsplit

from que_core.connection import Adapter
from que_core.sql import quoted


def with_database(dsn: str, dbname: str) -> str:
    """*dsn* pointing at database *dbname* instead (URL or key=value form)."""
    if "://" in dsn:
        parts = urlsplit(dsn)
        return urlunsplit(parts._replace(path="/" + dbname))
    return f"{dsn} dbname={dbname}"


def database_name(dsn: str) -> str:
    """The database *dsn* names (as :func:`with_database` writes it)."""
    return urlsplit(dsn).path.lstrip("/") if "://" in dsn else dsn.rsplit("=", 1)[1]


def create_database(adapter: Adapter, dsn: str, prefix: str = "que_test") -> str:
    """Create a database with a unique name on *dsn*'s server; return its DSN."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with closing(adapter.connect(dsn)) as admin:
        admin.execute(quoted(admin, "create_database_sql", name))
    return with_database(dsn, name)


def drop_database(adapter: Adapter, dsn: str, db_dsn: str) -> None:
    """Drop the database *db_dsn* names, ending its sessions first."""
    name = database_name(db_dsn)
    with closing(adapter.connect(dsn)) as admin:
        admin.execute(quoted(admin, "drop_database_sql", name))
