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

On top of Que's version 7, que-core adds revisions of its own, ``7.1/``,
``7.2/``, ...: things Que 2.4 ignores or never notices (a hardened notify
trigger, tables of its own), so that the version comment stays ``7`` and a
Ruby Que app keeps sharing the database. The revision is kept in
``que_values`` (key ``que_core``, which Que never uses). Migrating to 7
applies every revision; migrating below 7 removes them first.
"""

from __future__ import annotations

import re
from importlib import resources
from typing import Any

from que_core.connection import Connection
from que_core.errors import SchemaError

__all__ = ["LATEST_REVISION", "LATEST_VERSION", "current_revision", "current_version",
           "migrate", "require_latest"]

#: The schema version this que-core writes and expects (Que 2.x's).
LATEST_VERSION = 7
#: que-core's own revision of version 7 (directories 7.1, 7.2, ...).
LATEST_REVISION = 7

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

_REVISION_SQL = """
SELECT coalesce((SELECT (value ->> 'revision')::integer FROM que_values WHERE key = 'que_core'), 0)
"""
_SET_REVISION_SQL = (
    "INSERT INTO que_values (key, value) "
    "VALUES ('que_core', jsonb_build_object('revision', %s::integer)) "
    "ON CONFLICT (key) DO UPDATE SET value = que_values.value || excluded.value"
)


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


def current_revision(conn: Any) -> int:
    """que-core's revision of schema version 7 in *conn*'s database (0: none,
    as Ruby Que leaves it, or not at version 7)."""
    c = _connection(conn)
    if current_version(c) != LATEST_VERSION:
        return 0
    return int(c.execute(_REVISION_SQL)[0][0])


def require_latest(conn: Any) -> None:
    """Raise :class:`~que_core.errors.SchemaError`, saying what to do, unless
    the database has the schema this que-core works with."""
    c = _connection(conn)
    version = current_version(c)
    if version == 0:
        raise SchemaError("the database has no que schema: run `que migrate` first")
    _check_supported(version)
    if version < LATEST_VERSION:
        raise SchemaError(
            f"the que schema is at version {version}; this que-core works with version "
            f"{LATEST_VERSION}: run `que migrate`"
        )
    revision = current_revision(c)
    if revision < LATEST_REVISION:
        raise SchemaError(
            f"the que schema is at version {version} without que-core's revision "
            f"{LATEST_REVISION} of it (it has {revision}; Ruby Que's migrations do not add "
            "it): run `que migrate`"
        )
    if revision > LATEST_REVISION:
        raise SchemaError(
            f"the que schema has que-core's revision {revision} of version {version}, newer "
            f"than this que-core knows ({LATEST_REVISION}): upgrade que-core"
        )


def _check_supported(version: int) -> None:
    if version > LATEST_VERSION:
        raise SchemaError(
            f"the database is at que schema version {version}, which is newer than "
            f"this que-core supports (up to {LATEST_VERSION}); upgrade que-core, or "
            f"migrate the database down with the tool that migrated it up"
        )


def _sql(version: int | str, direction: str) -> str:
    path = resources.files(__name__).joinpath(str(version)).joinpath(f"{direction}.sql")
    return path.read_text(encoding="utf-8")


def _revise(c: Connection, target: int) -> None:
    """Step que-core's revision of version 7 to *target*, one transaction a step."""
    while True:
        with c.transaction():
            c.execute(_LOCK_SQL)
            if current_version(c) != LATEST_VERSION:
                return  # another migrator moved the version meanwhile
            revision = int(c.execute(_REVISION_SQL)[0][0])
            if revision == target or revision > LATEST_REVISION:
                return
            if revision < target:
                step = revision + 1
                c.execute(_sql(f"{LATEST_VERSION}.{step}", "up"))
            else:
                step = revision - 1
                c.execute(_sql(f"{LATEST_VERSION}.{revision}", "down"))
            c.execute(_SET_REVISION_SQL, (step,))


def migrate(conn: Any, version: int | None = None) -> int:
    """Migrate *conn*'s database up or down to *version* (default: latest).

    Steps one version at a time, each in its own transaction. Migrating to
    the version the database is at does nothing, except that migrating to 7
    also brings que-core's revision of it up to date. Returns the new version.

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
    if current == LATEST_VERSION and target < LATEST_VERSION:
        _revise(c, 0)
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
    if current == LATEST_VERSION:
        _revise(c, LATEST_REVISION)
    return current
