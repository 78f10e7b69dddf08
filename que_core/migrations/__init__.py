"""Schema migrations: bring a database to a que schema version, up or down.

The schema is the one of Ruby's Que 2.x (version 7), so que-core and Que can
share a database. As in Que, the version is the comment on the ``que_jobs``
table (``COMMENT ON TABLE que_jobs IS '7'``); version 0 means there is no
``que_jobs`` table.

Each version ``N`` has ``N/up.sql`` (from ``N - 1`` to ``N``) and
``N/down.sql`` (from ``N`` back to ``N - 1``) in this package. Every step runs
in its own transaction, under a transaction-level advisory lock, and sets the
version comment in that same transaction, so a failed step changes nothing
and concurrent migrators take turns.
"""

from __future__ import annotations

import re
from importlib import resources
from typing import Any

from que_core.connection import Connection
from que_core.errors import SchemaError

__all__ = ["LATEST_VERSION", "current_version", "migrate"]

#: The schema version this que-core writes and expects (Que 2.x's).
LATEST_VERSION = 7

# The advisory lock that serialises migrators, as two int4 keys: PostgreSQL
# keeps two-key advisory locks apart from one-bigint ones, so this can never
# collide with a job lock (pg_advisory_lock(job id)). The first key is
# "que\0" in ASCII; the second names the purpose.
_LOCK_KEYS = (0x71756500, 1)
_LOCK_SQL = f"SELECT pg_advisory_xact_lock({_LOCK_KEYS[0]}, {_LOCK_KEYS[1]})"

# The comment on the que_jobs table that search_path finds, if that table
# exists (no row when it does not).
_VERSION_SQL = """
SELECT d.description
FROM (SELECT to_regclass('que_jobs') AS oid) AS t
LEFT JOIN pg_catalog.pg_description AS d
  ON d.objoid = t.oid
  AND d.classoid = 'pg_catalog.pg_class'::regclass
  AND d.objsubid = 0
WHERE t.oid IS NOT NULL
"""

_VERSION_RE = re.compile(r"[0-9]+")


def _connection(conn: Any) -> Connection:
    if isinstance(conn, Connection):
        return conn
    from que_core.plugins import wrap_connection

    return wrap_connection(conn)


def current_version(conn: Any) -> int:
    """The que schema version of *conn*'s database; 0 when it has none.

    *conn* is a que-core :class:`~que_core.connection.Connection` or a raw
    driver connection. Raises :class:`~que_core.errors.SchemaError` when
    ``que_jobs`` exists but its comment is not a version number.
    """
    rows = _connection(conn).execute(_VERSION_SQL)
    if not rows:
        return 0
    comment = rows[0][0]
    if comment is None:
        raise SchemaError(
            "que_jobs exists but has no schema version comment, so que-core cannot "
            "tell which version it is. A que_jobs table made by Que 0.x before it "
            "recorded versions is version 1: mark it with "
            "COMMENT ON TABLE que_jobs IS '1' and migrate again; any other que_jobs "
            "table is not a que table."
        )
    text = str(comment).strip()
    if not _VERSION_RE.fullmatch(text):
        raise SchemaError(
            f"the comment on que_jobs is {comment!r}, not a que schema version number"
        )
    return int(text)


def _check_supported(version: int) -> None:
    if version > LATEST_VERSION:
        raise SchemaError(
            f"the database is at que schema version {version}, which is newer than "
            f"this que-core supports (up to {LATEST_VERSION}); upgrade que-core, or "
            f"migrate the database down with the tool that migrated it up"
        )


def _sql(version: int, direction: str) -> str:
    path = resources.files(__name__).joinpath(str(version)).joinpath(f"{direction}.sql")
    return path.read_text(encoding="utf-8")


def migrate(conn: Any, version: int | None = None) -> int:
    """Migrate *conn*'s database up or down to *version* (default: latest).

    Steps one version at a time, each in its own transaction. Migrating to
    the version the database is at does nothing. Returns the new version.

    *conn* is a que-core :class:`~que_core.connection.Connection` or a raw
    driver connection (psycopg, psycopg2, pg8000, ...). Give it a connection
    in autocommit mode for each step to commit on its own. A connection that
    is inside a transaction (a driver connection without autocommit is, as
    soon as it has run a statement) keeps it: the steps become savepoints of
    that transaction and nothing is saved until the caller commits. Use
    PostgreSQL's default isolation level (READ COMMITTED), which lets a
    migrator that waited for another one see that one's work.

    Raises :class:`~que_core.errors.SchemaError` for a target outside
    ``0..LATEST_VERSION`` or a database newer than :data:`LATEST_VERSION`.
    """
    target = LATEST_VERSION if version is None else version
    if isinstance(target, bool) or not isinstance(target, int):
        raise TypeError(f"version must be an int, not {type(target).__name__}")
    if not 0 <= target <= LATEST_VERSION:
        raise SchemaError(
            f"cannot migrate to que schema version {target}: versions go from 0 "
            f"(no que schema) to {LATEST_VERSION}"
        )

    c = _connection(conn)
    current = current_version(c)
    _check_supported(current)
    while current != target:
        with c.transaction():
            c.execute(_LOCK_SQL)
            # Another migrator may have moved the schema while we waited.
            current = current_version(c)
            _check_supported(current)
            if current == target:
                break
            if current < target:
                step = current + 1
                c.execute(_sql(step, "up"))
            else:
                step = current - 1
                c.execute(_sql(current, "down"))
            if step > 0:
                c.execute(f"COMMENT ON TABLE que_jobs IS '{step}'")
            current = step
    return current
