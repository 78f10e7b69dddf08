"""Schema migrations against a real PostgreSQL.

The expected version 7 schema below is Ruby Que 2.4's, as PostgreSQL itself
describes it (pg_get_constraintdef, pg_get_indexdef, ...): a database that
que-core migrated must be indistinguishable from one Que migrated, apart from
the bodies of the functions.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from importlib import resources
from typing import Any

import pytest

import que_core
from conformance.fixtures import collect
from que_core import errors, migrations
from que_core.connection import Adapter, Connection
from que_core.migrations import LATEST_VERSION, current_version, migrate
from tests.helpers import session

# --------------------------------------------------------------------------
# What version 7 looks like (Que 2.4, job_schema_version 2).

EXPECTED_V7_TABLES: dict[str, dict[str, Any]] = {
    "que_jobs": {
        "persistence": "p",
        "options": ["fillfactor=90"],
        "columns": [
            ("priority", "smallint", True, "100"),
            ("run_at", "timestamp with time zone", True, "now()"),
            ("id", "bigint", True, "nextval('que_jobs_id_seq'::regclass)"),
            ("job_class", "text", True, None),
            ("error_count", "integer", True, "0"),
            ("last_error_message", "text", False, None),
            ("queue", "text", True, "'default'::text"),
            ("last_error_backtrace", "text", False, None),
            ("finished_at", "timestamp with time zone", False, None),
            ("expired_at", "timestamp with time zone", False, None),
            ("args", "jsonb", True, "'[]'::jsonb"),
            ("data", "jsonb", True, "'{}'::jsonb"),
            ("job_schema_version", "integer", True, None),
            ("kwargs", "jsonb", True, "'{}'::jsonb"),
        ],
        "constraints": {
            "que_jobs_pkey": "PRIMARY KEY (id)",
            "error_length": (
                "CHECK (((char_length(last_error_message) <= 500) "
                "AND (char_length(last_error_backtrace) <= 10000)))"
            ),
            "job_class_length": (
                "CHECK ((char_length( CASE job_class WHEN "
                "'ActiveJob::QueueAdapters::QueAdapter::JobWrapper'::text "
                "THEN ((args -> 0) ->> 'job_class'::text) ELSE job_class END) <= 200))"
            ),
            "queue_length": "CHECK ((char_length(queue) <= 100))",
            "valid_args": "CHECK ((jsonb_typeof(args) = 'array'::text))",
            "valid_data": (
                "CHECK (((jsonb_typeof(data) = 'object'::text) AND ((NOT (data ? 'tags'::text)) "
                "OR ((jsonb_typeof((data -> 'tags'::text)) = 'array'::text) "
                "AND (jsonb_array_length((data -> 'tags'::text)) <= 5) "
                "AND que_validate_tags((data -> 'tags'::text))))))"
            ),
        },
        "indexes": {
            "que_jobs_pkey": "CREATE UNIQUE INDEX que_jobs_pkey ON que_jobs USING btree (id)",
            "que_poll_idx": (
                "CREATE INDEX que_poll_idx ON que_jobs USING btree "
                "(job_schema_version, queue, priority, run_at, id) "
                "WHERE ((finished_at IS NULL) AND (expired_at IS NULL))"
            ),
            "que_jobs_args_gin_idx": (
                "CREATE INDEX que_jobs_args_gin_idx ON que_jobs USING gin (args jsonb_path_ops)"
            ),
            "que_jobs_data_gin_idx": (
                "CREATE INDEX que_jobs_data_gin_idx ON que_jobs USING gin (data jsonb_path_ops)"
            ),
            "que_jobs_kwargs_gin_idx": (
                "CREATE INDEX que_jobs_kwargs_gin_idx ON que_jobs USING gin (kwargs jsonb_path_ops)"
            ),
        },
    },
    "que_lockers": {
        "persistence": "u",  # UNLOGGED
        "options": None,
        "columns": [
            ("pid", "integer", True, None),
            ("worker_count", "integer", True, None),
            ("worker_priorities", "integer[]", True, None),
            ("ruby_pid", "integer", True, None),
            ("ruby_hostname", "text", True, None),
            ("queues", "text[]", True, None),
            ("listening", "boolean", True, None),
            ("job_schema_version", "integer", False, "1"),
        ],
        "constraints": {
            "que_lockers_pkey": "PRIMARY KEY (pid)",
            "valid_queues": (
                "CHECK (((array_ndims(queues) = 1) AND (array_length(queues, 1) IS NOT NULL)))"
            ),
            "valid_worker_priorities": (
                "CHECK (((array_ndims(worker_priorities) = 1) "
                "AND (array_length(worker_priorities, 1) IS NOT NULL)))"
            ),
        },
        "indexes": {
            "que_lockers_pkey": (
                "CREATE UNIQUE INDEX que_lockers_pkey ON que_lockers USING btree (pid)"
            ),
        },
    },
    "que_values": {
        "persistence": "p",
        "options": ["fillfactor=90"],
        "columns": [
            ("key", "text", True, None),
            ("value", "jsonb", True, "'{}'::jsonb"),
        ],
        "constraints": {
            "que_values_pkey": "PRIMARY KEY (key)",
            "valid_value": "CHECK ((jsonb_typeof(value) = 'object'::text))",
        },
        "indexes": {
            "que_values_pkey": (
                "CREATE UNIQUE INDEX que_values_pkey ON que_values USING btree (key)"
            ),
        },
    },
}

# name -> (identity arguments, result, language)
EXPECTED_V7_FUNCTIONS = {
    "que_validate_tags": ("tags_array jsonb", "boolean", "sql"),
    "que_determine_job_state": ("job que_jobs", "text", "sql"),
    "que_job_notify": ("", "trigger", "plpgsql"),
    "que_state_notify": ("", "trigger", "plpgsql"),
}

_SKIP_NOTIFY = (
    "WHEN ((NOT (COALESCE(current_setting('que.skip_notify'::text, true), ''::text) "
    "= 'true'::text)))"
)
EXPECTED_V7_TRIGGERS = {
    "que_job_notify": (
        f"CREATE TRIGGER que_job_notify AFTER INSERT ON que_jobs FOR EACH ROW {_SKIP_NOTIFY} "
        "EXECUTE FUNCTION que_job_notify()"
    ),
    "que_state_notify": (
        "CREATE TRIGGER que_state_notify AFTER INSERT OR DELETE OR UPDATE ON que_jobs "
        f"FOR EACH ROW {_SKIP_NOTIFY} EXECUTE FUNCTION que_state_notify()"
    ),
}

ACTIVE_JOB_WRAPPER = "ActiveJob::QueueAdapters::QueAdapter::JobWrapper"


# --------------------------------------------------------------------------
# Catalog helpers


def _norm(sql: str | None) -> str | None:
    """Catalog text without schema prefixes and with runs of whitespace as one space."""
    if sql is None:
        return None
    return re.sub(r"\s+", " ", sql.replace("public.", "")).strip()


def describe_table(conn: Connection, table: str) -> dict[str, Any] | None:
    rows = conn.execute(
        f"SELECT c.relpersistence, c.reloptions FROM pg_class AS c "
        f"WHERE c.oid = to_regclass('{table}')"
    )
    if not rows:
        return None
    persistence, options = rows[0]
    oid = f"'{table}'::regclass"
    columns = [
        (name, typ, notnull, _norm(default))
        for name, typ, notnull, default in conn.execute(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, "
            "       pg_get_expr(d.adbin, d.adrelid) "
            "FROM pg_attribute AS a "
            "LEFT JOIN pg_attrdef AS d ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
            f"WHERE a.attrelid = {oid} AND a.attnum > 0 AND NOT a.attisdropped "
            "ORDER BY a.attnum"
        )
    ]
    constraints = {
        name: _norm(definition)
        for name, definition in conn.execute(
            f"SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = {oid}"
        )
    }
    indexes = {
        name: _norm(definition)
        for name, definition in conn.execute(
            "SELECT c.relname, pg_get_indexdef(i.indexrelid) "
            "FROM pg_index AS i JOIN pg_class AS c ON c.oid = i.indexrelid "
            f"WHERE i.indrelid = {oid}"
        )
    }
    return {
        "persistence": persistence,
        "options": list(options) if options else None,
        "columns": columns,
        "constraints": constraints,
        "indexes": indexes,
    }


def que_functions(conn: Connection) -> dict[str, tuple[str, str, str]]:
    return {
        name: (args, result, language)
        for name, args, result, language in conn.execute(
            "SELECT p.proname, pg_get_function_identity_arguments(p.oid), "
            "       pg_get_function_result(p.oid), l.lanname "
            "FROM pg_proc AS p JOIN pg_language AS l ON l.oid = p.prolang "
            "WHERE p.pronamespace = 'public'::regnamespace AND p.proname ~ '^que_'"
        )
    }


#: What que-core's revisions of version 7 add, which Que 2.4 does not have
#: (and ignores).
REVISION_FUNCTIONS = {"que_core_next_jobs", "que_core_cancel", "que_core_apply_cancels",
                      "que_core_hold_running"}
#: What que-core's revisions add to Que's tables (7.3): columns Que never
#: reads or writes (its INSERTs name their columns), after Que's own, and a
#: partial index over them; and tables of their own.
REVISION_COLUMNS = {
    "que_jobs": [
        ("que_core_unique_key", "text", False, None),
        ("que_core_result", "jsonb", False, None),
    ],
}
REVISION_INDEXES = {
    "que_jobs": {
        "que_core_unique_key_idx": (
            "CREATE UNIQUE INDEX que_core_unique_key_idx ON que_jobs USING btree "
            "(job_class, que_core_unique_key) WHERE ((que_core_unique_key IS NOT NULL) "
            "AND (finished_at IS NULL) AND (expired_at IS NULL))"
        ),
        # 7.5: the dashboard's (que web)
        "que_core_expired_idx": "CREATE INDEX que_core_expired_idx ON que_jobs USING btree "
                                "(queue) WHERE (expired_at IS NOT NULL)",
        "que_core_retrying_idx": "CREATE INDEX que_core_retrying_idx ON que_jobs USING btree "
                                 "(queue, run_at) WHERE ((error_count > 0) AND "
                                 "(finished_at IS NULL) AND (expired_at IS NULL))",
        # 7.6: retention's (kept rows only)
        "que_core_jobs_finished_at_idx": (
            "CREATE INDEX que_core_jobs_finished_at_idx ON que_jobs "
            "USING btree (finished_at) WHERE (finished_at IS NOT NULL)"),
        "que_core_jobs_expired_at_idx": (
            "CREATE INDEX que_core_jobs_expired_at_idx ON que_jobs "
            "USING btree (expired_at) WHERE (expired_at IS NOT NULL)"),
    },
}
REVISION_RELATIONS = {"que_core_ticks", "que_core_ticks_pkey", "que_core_throughput",
                      "que_core_throughput_pkey",
                      # 7.6: paused queues, cancel requests
                      "que_core_paused_queues", "que_core_paused_queues_pkey",
                      "que_core_cancels", "que_core_cancels_pkey"}


def que_triggers(conn: Connection) -> dict[str, str | None]:
    return {
        name: _norm(definition)
        for name, definition in conn.execute(
            "SELECT t.tgname, pg_get_triggerdef(t.oid) FROM pg_trigger AS t "
            "WHERE NOT t.tgisinternal AND t.tgrelid = to_regclass('que_jobs')"
        )
    }


def snapshot(conn: Connection) -> dict[str, Any]:
    """Everything que owns in the database, comparable across migration paths.

    Columns are compared as a set: a down step cannot restore physical
    column order, and nothing depends on it.
    """
    tables = {}
    for table in ("que_jobs", "que_lockers", "que_values"):
        described = describe_table(conn, table)
        if described is not None:
            described["columns"] = sorted(described["columns"])
        tables[table] = described
    functions = {
        name: (args, result, language, source)
        for name, args, result, language, source in conn.execute(
            "SELECT p.proname, pg_get_function_identity_arguments(p.oid), "
            "       pg_get_function_result(p.oid), l.lanname, p.prosrc "
            "FROM pg_proc AS p JOIN pg_language AS l ON l.oid = p.prolang "
            "WHERE p.proname ~ '^que_'"
        )
    }
    relations = sorted(
        (name, kind)
        for name, kind in conn.execute(
            "SELECT relname, relkind FROM pg_class WHERE relname ~ '^que_'"
        )
    )
    comment = conn.execute("SELECT obj_description(to_regclass('que_jobs'), 'pg_class')")[0][0]
    return {
        "tables": tables,
        "functions": functions,
        "triggers": que_triggers(conn),
        "relations": relations,
        "comment": comment,
    }


_JSON_COLUMNS = {"args", "data", "kwargs"}


def insert_job(conn: Connection, **values: Any) -> int:
    """A plain INSERT as any client (Ruby Que, psql, ...) would write it."""
    values.setdefault("job_class", "SomeJob")
    values.setdefault("job_schema_version", 2)
    columns = ", ".join(values)
    # JSON travels as text and is cast in SQL.
    placeholders = ", ".join("%s::jsonb" if c in _JSON_COLUMNS else "%s" for c in values)
    rows = conn.execute(
        f"INSERT INTO que_jobs ({columns}) VALUES ({placeholders}) RETURNING id",
        list(values.values()),
    )
    return int(rows[0][0])


def add_locker(
    conn: Connection,
    pid: int,
    *,
    queues: str = "{default}",
    worker_count: int = 1,
    listening: bool = True,
    job_schema_version: int = 2,
) -> None:
    conn.execute(
        "INSERT INTO que_lockers (pid, worker_count, worker_priorities, ruby_pid, "
        "ruby_hostname, queues, listening, job_schema_version) "
        "VALUES (%s, %s, '{10,30,50}'::integer[], 4242, 'test-host', %s::text[], %s, %s)",
        (pid, worker_count, queues, listening, job_schema_version),
    )


# --------------------------------------------------------------------------
# Fixtures


@pytest.fixture
def empty_conn(adapter: Adapter, empty_dsn: str) -> Iterator[Connection]:
    yield from session(adapter, empty_dsn)


@pytest.fixture
def other_conn(adapter: Adapter, dsn: str) -> Iterator[Connection]:
    yield from session(adapter, dsn)


# --------------------------------------------------------------------------
# The SQL files themselves


def test_every_version_has_up_and_down_sql_without_percent_signs() -> None:
    root = resources.files("que_core.migrations")
    for version in range(1, LATEST_VERSION + 1):
        for direction in ("up", "down"):
            text = root.joinpath(str(version)).joinpath(f"{direction}.sql").read_text("utf-8")
            assert text.strip(), (version, direction)
            # Drivers that interpolate parameters treat % specially.
            assert "%" not in text, (version, direction)
    assert not root.joinpath(str(LATEST_VERSION + 1)).is_dir()


def test_exported_from_package() -> None:
    assert que_core.migrate is migrate
    assert que_core.current_version is current_version
    assert que_core.LATEST_VERSION == LATEST_VERSION == 7
    for name in ("migrate", "current_version", "LATEST_VERSION"):
        assert name in que_core.__all__


# --------------------------------------------------------------------------
# Versions and the schema


def test_empty_database_is_version_0(empty_conn: Connection) -> None:
    assert current_version(empty_conn) == 0


def test_migrate_up_builds_que_2_4_schema(empty_conn: Connection) -> None:
    assert migrate(empty_conn) == LATEST_VERSION
    assert current_version(empty_conn) == 7
    assert empty_conn.execute("SELECT obj_description('que_jobs'::regclass, 'pg_class')") == [
        ("7",)
    ]

    for table, expected in EXPECTED_V7_TABLES.items():
        actual = describe_table(empty_conn, table)
        assert actual is not None, table
        assert actual["persistence"] == expected["persistence"], table
        assert actual["options"] == expected["options"], table
        assert actual["columns"] == expected["columns"] + REVISION_COLUMNS.get(table, []), table
        assert actual["constraints"] == {k: _norm(v) for k, v in expected["constraints"].items()}
        indexes = {**expected["indexes"], **REVISION_INDEXES.get(table, {})}
        assert actual["indexes"] == {k: _norm(v) for k, v in indexes.items()}

    assert empty_conn.execute(
        "SELECT pg_get_serial_sequence('que_jobs', 'id'), s.seqtypid::regtype::text, "
        "       s.seqstart, s.seqincrement "
        "FROM pg_sequence AS s WHERE s.seqrelid = 'que_jobs_id_seq'::regclass"
    ) == [("public.que_jobs_id_seq", "bigint", 1, 1)]

    functions = que_functions(empty_conn)
    assert set(functions) - set(EXPECTED_V7_FUNCTIONS) == REVISION_FUNCTIONS
    assert {k: v for k, v in functions.items() if k in EXPECTED_V7_FUNCTIONS} \
        == EXPECTED_V7_FUNCTIONS
    assert que_triggers(empty_conn) == {k: _norm(v) for k, v in EXPECTED_V7_TRIGGERS.items()}

    # Nothing else named que_* exists (row types of the tables aside).
    relations = {
        name
        for (name,) in empty_conn.execute("SELECT relname FROM pg_class WHERE relname ~ '^que_'")
    }
    assert relations == {
        "que_jobs",
        "que_jobs_id_seq",
        "que_lockers",
        "que_values",
        *EXPECTED_V7_TABLES["que_jobs"]["indexes"],
        *EXPECTED_V7_TABLES["que_lockers"]["indexes"],
        *EXPECTED_V7_TABLES["que_values"]["indexes"],
        *REVISION_INDEXES["que_jobs"],
        *REVISION_RELATIONS,
    }


def test_migrate_to_current_version_does_nothing(empty_conn: Connection) -> None:
    assert migrate(empty_conn, 0) == 0
    assert current_version(empty_conn) == 0
    assert migrate(empty_conn) == 7
    job_id = insert_job(empty_conn)
    before = snapshot(empty_conn)
    assert migrate(empty_conn) == 7
    assert migrate(empty_conn, 7) == 7
    assert snapshot(empty_conn) == before
    assert empty_conn.execute("SELECT id FROM que_jobs") == [(job_id,)]


@pytest.mark.per_adapter
def test_every_step_down_and_back_up(empty_conn: Connection) -> None:
    fresh = {0: snapshot(empty_conn)}
    for version in range(1, LATEST_VERSION + 1):
        assert migrate(empty_conn, version) == version
        assert current_version(empty_conn) == version
        fresh[version] = snapshot(empty_conn)
        assert fresh[version]["comment"] == str(version)
    assert fresh[LATEST_VERSION]["tables"]["que_jobs"] is not None

    for version in range(LATEST_VERSION - 1, -1, -1):
        assert migrate(empty_conn, version) == version
        assert current_version(empty_conn) == version
        assert snapshot(empty_conn) == fresh[version], f"down to {version}"
        assert migrate(empty_conn) == LATEST_VERSION
        assert snapshot(empty_conn) == fresh[LATEST_VERSION], f"up from {version}"
        assert migrate(empty_conn, version) == version


def test_down_to_0_leaves_no_que_objects(empty_conn: Connection) -> None:
    migrate(empty_conn)
    insert_job(empty_conn)
    assert migrate(empty_conn, 0) == 0
    assert current_version(empty_conn) == 0
    for catalog, column in (
        ("pg_class", "relname"),
        ("pg_proc", "proname"),
        ("pg_type", "typname"),
        ("pg_trigger", "tgname"),
        ("pg_constraint", "conname"),
    ):
        leftovers = empty_conn.execute(f"SELECT {column} FROM {catalog} WHERE {column} ~ '^_?que_'")
        assert leftovers == [], catalog


def test_intermediate_versions_match_que_history(empty_conn: Connection) -> None:
    """Spot checks that versions 1-6 are the ones Que's history defines, so
    a database left at one of them by Que can be migrated by que-core."""
    migrate(empty_conn, 1)
    table = describe_table(empty_conn, "que_jobs")
    assert table is not None
    assert table["columns"] == [
        ("priority", "integer", True, "1"),
        ("run_at", "timestamp with time zone", True, "now()"),
        ("job_id", "bigint", True, "nextval('que_jobs_job_id_seq'::regclass)"),
        ("job_class", "text", True, None),
        ("args", "json", True, "'[]'::json"),
        ("error_count", "integer", True, "0"),
        ("last_error", "text", False, None),
    ]
    assert table["constraints"] == {"que_jobs_pkey": "PRIMARY KEY (priority, run_at, job_id)"}

    migrate(empty_conn, 3)
    table = describe_table(empty_conn, "que_jobs")
    assert table is not None
    assert ("priority", "smallint", True, "100") in table["columns"]
    assert ("queue", "text", True, "''::text") in table["columns"]
    assert table["constraints"] == {
        "que_jobs_pkey": "PRIMARY KEY (queue, priority, run_at, job_id)"
    }

    migrate(empty_conn, 5)
    table = describe_table(empty_conn, "que_jobs")
    assert table is not None
    assert ("job_schema_version", "integer", False, "1") in table["columns"]
    assert "kwargs" not in {c[0] for c in table["columns"]}
    assert set(table["indexes"]) == {
        "que_jobs_pkey",
        "que_poll_idx",
        "que_poll_idx_with_job_schema_version",
        "que_jobs_args_gin_idx",
        "que_jobs_data_gin_idx",
    }
    assert table["indexes"]["que_poll_idx"] == (
        "CREATE INDEX que_poll_idx ON que_jobs USING btree (queue, priority, run_at, id) "
        "WHERE ((finished_at IS NULL) AND (expired_at IS NULL))"
    )
    # Before version 7 the triggers fire whatever que.skip_notify says.
    assert all("skip_notify" not in (d or "") for d in que_triggers(empty_conn).values())

    migrate(empty_conn, 6)
    table = describe_table(empty_conn, "que_jobs")
    assert table is not None
    assert ("job_schema_version", "integer", True, None) in table["columns"]
    assert "que_poll_idx_with_job_schema_version" not in table["indexes"]


def test_jobs_survive_the_way_down_to_3_and_up(empty_conn: Connection) -> None:
    migrate(empty_conn, 3)
    empty_conn.execute(
        "INSERT INTO que_jobs (job_class, args, last_error, queue, error_count) VALUES "
        "('Old', '[1, \"a\"]', E'boom\\nfile.rb:1\\nfile.rb:2', '', 1), "
        "('Scalar', '5', NULL, 'mail', 0)"
    )
    migrate(empty_conn)
    rows = empty_conn.execute(
        "SELECT job_class, queue, args, data, kwargs, last_error_message, last_error_backtrace, "
        "job_schema_version FROM que_jobs ORDER BY id"
    )
    assert rows == [
        ("Old", "default", [1, "a"], {}, {}, "boom", "file.rb:1\nfile.rb:2", 1),
        ("Scalar", "mail", [5], {}, {}, None, None, 1),
    ]

    # A finished job cannot be represented in version 3: it is dropped there.
    insert_job(empty_conn, job_class="Done", finished_at=datetime.now(timezone.utc))
    migrate(empty_conn, 3)
    rows = empty_conn.execute(
        "SELECT job_class, queue, args::text, last_error FROM que_jobs ORDER BY job_id"
    )
    assert rows == [
        ("Old", "", '[1, "a"]', "boom\nfile.rb:1\nfile.rb:2"),
        ("Scalar", "mail", "[5]", None),
    ]


# --------------------------------------------------------------------------
# Refusals and errors


def test_refuses_target_versions_it_does_not_know(empty_conn: Connection) -> None:
    for bad in (99, LATEST_VERSION + 1, -1):
        with pytest.raises(errors.SchemaError, match=str(bad)):
            migrate(empty_conn, bad)
    with pytest.raises(TypeError):
        migrate(empty_conn, "7")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        migrate(empty_conn, True)
    assert current_version(empty_conn) == 0
    assert empty_conn.execute("SELECT to_regclass('que_jobs')") == [(None,)]


def test_refuses_a_database_newer_than_it_knows(conn: Connection) -> None:
    conn.execute("COMMENT ON TABLE que_jobs IS '99'")
    assert current_version(conn) == 99
    before = snapshot(conn)
    for target in (None, 7, 3, 0):
        with pytest.raises(errors.SchemaError, match="newer"):
            migrate(conn, target)
    assert snapshot(conn) == before


@pytest.mark.parametrize("comment", ["seven", "7.0", "-1", "", "7 8"])
def test_unparsable_version_comment(conn: Connection, comment: str) -> None:
    conn.execute(f"COMMENT ON TABLE que_jobs IS '{comment}'")
    with pytest.raises(errors.SchemaError, match="comment"):
        current_version(conn)
    with pytest.raises(errors.SchemaError):
        migrate(conn)


def test_missing_version_comment(conn: Connection) -> None:
    conn.execute("COMMENT ON TABLE que_jobs IS NULL")
    with pytest.raises(errors.SchemaError, match="no schema version comment"):
        current_version(conn)


def test_failed_step_changes_nothing(empty_conn: Connection) -> None:
    migrate(empty_conn, 3)
    empty_conn.execute("INSERT INTO que_jobs (job_class) VALUES ('Kept')")
    empty_conn.execute("CREATE TABLE que_values (squatter int)")  # step 4 creates this
    before = snapshot(empty_conn)
    with pytest.raises(errors.DatabaseError, match="que_values"):
        migrate(empty_conn)
    assert current_version(empty_conn) == 3
    assert snapshot(empty_conn) == before
    assert empty_conn.execute("SELECT job_class, queue FROM que_jobs") == [("Kept", "")]
    empty_conn.execute("DROP TABLE que_values")
    assert migrate(empty_conn) == 7


@pytest.mark.per_adapter
def test_accepts_a_raw_driver_connection(adapter: Adapter, empty_dsn: str) -> None:
    wrapper = adapter.connect(empty_dsn)
    try:
        raw = wrapper.raw
        assert current_version(raw) == 0
        assert migrate(raw, 4) == 4
        assert current_version(raw) == 4
        assert migrations.migrate(raw) == 7
        assert current_version(wrapper) == 7
    finally:
        wrapper.close()


@pytest.mark.per_adapter
def test_raw_connection_inside_a_transaction_leaves_commit_to_caller(
    adapter: Adapter, empty_dsn: str
) -> None:
    if adapter.name != "psycopg":
        pytest.skip("uses psycopg directly")
    import psycopg

    raw = psycopg.connect(empty_dsn)  # not autocommit
    try:
        assert migrate(raw) == 7
        raw.rollback()
        assert current_version(raw) == 0
        assert migrate(raw) == 7
        raw.commit()
    finally:
        raw.close()
    check = adapter.connect(empty_dsn)
    try:
        assert current_version(check) == 7
    finally:
        check.close()


def test_concurrent_migrators_take_turns(adapter: Adapter, empty_dsn: str) -> None:
    workers = 4
    barrier = threading.Barrier(workers)
    results: list[Any] = [None] * workers

    def run(i: int, target: int) -> None:
        c = adapter.connect(empty_dsn)
        try:
            barrier.wait(timeout=10)
            results[i] = migrate(c, target)
        except BaseException as exc:
            results[i] = exc
        finally:
            c.close()

    for target in (LATEST_VERSION, 0, 5, LATEST_VERSION):
        threads = [threading.Thread(target=run, args=(i, target)) for i in range(workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert results == [target] * workers, results

    c = adapter.connect(empty_dsn)
    try:
        assert current_version(c) == LATEST_VERSION
        assert c.execute("SELECT count(*) FROM pg_class WHERE relname = 'que_jobs'") == [(1,)]
    finally:
        c.close()


# --------------------------------------------------------------------------
# The schema at work: inserts, constraints, triggers


def test_enqueue_by_plain_insert(conn: Connection) -> None:
    before = datetime.now(timezone.utc)
    rows = conn.execute(
        "INSERT INTO que_jobs (job_class, job_schema_version) VALUES ('PlainJob', 2) "
        "RETURNING id, priority, run_at, queue, args, data, kwargs, error_count, "
        "finished_at, expired_at, last_error_message"
    )
    (job_id, priority, run_at, queue, args, data, kwargs, errs, finished, expired, msg) = rows[0]
    assert job_id >= 1
    assert (priority, queue, args, data, kwargs, errs) == (100, "default", [], {}, {}, 0)
    assert (finished, expired, msg) == (None, None, None)
    assert (
        before - timedelta(seconds=5) <= run_at <= datetime.now(timezone.utc) + timedelta(seconds=5)
    )
    assert insert_job(conn) == job_id + 1
    # The row format must be stated: there is no default.
    with pytest.raises(errors.IntegrityError):
        conn.execute("INSERT INTO que_jobs (job_class) VALUES ('NoVersion')")


def test_job_notify_tells_the_listening_locker(conn: Connection, other_conn: Connection) -> None:
    pid = conn.execute("SELECT pg_backend_pid()")[0][0]
    add_locker(conn, pid)
    conn.execute(f"LISTEN que_listener_{pid}")

    job_id = insert_job(other_conn, priority=7)
    got = collect(conn, 1)
    assert len(got) == 1
    assert got[0].channel == f"que_listener_{pid}"
    payload = json.loads(got[0].payload)
    assert set(payload) == {"message_type", "queue", "priority", "id", "run_at"}
    assert payload["message_type"] == "job_available"
    assert (payload["queue"], payload["priority"], payload["id"]) == ("default", 7, job_id)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", payload["run_at"])
    run_at = conn.execute("SELECT run_at FROM que_jobs WHERE id = %s", (job_id,))[0][0]
    sent = datetime.strptime(payload["run_at"], "%Y-%m-%dT%H:%M:%S.%fZ")
    assert sent.replace(tzinfo=timezone.utc) == run_at


def test_job_notify_stays_quiet_when_it_should(conn: Connection, other_conn: Connection) -> None:
    pid = conn.execute("SELECT pg_backend_pid()")[0][0]
    add_locker(conn, pid, queues="{default,mail}")
    conn.execute(f"LISTEN que_listener_{pid}")

    # Scheduled for later: the poll finds it when it is due.
    insert_job(other_conn, run_at=datetime.now(timezone.utc) + timedelta(hours=1))
    # A queue the locker does not work.
    insert_job(other_conn, queue="reports")
    # Another row format than the locker's (Que 2.x compares them).
    insert_job(other_conn, job_schema_version=1)
    # Bulk enqueue: que.skip_notify in the transaction.
    with other_conn.transaction():
        other_conn.execute("SET LOCAL que.skip_notify = 'true'")
        insert_job(other_conn)
    # The control: due now, in a queue the locker works.
    expected = insert_job(other_conn, queue="mail")

    got = collect(conn, 1)
    time.sleep(0.2)
    got += conn.notifications(0.2)
    assert [json.loads(n.payload)["id"] for n in got] == [expected]


def test_job_notify_ignores_lockers_that_do_not_listen(
    conn: Connection, other_conn: Connection
) -> None:
    pid = conn.execute("SELECT pg_backend_pid()")[0][0]
    other = other_conn.execute("SELECT pg_backend_pid()")[0][0]
    add_locker(conn, pid, listening=False)
    add_locker(conn, other, listening=True, queues="{other}")
    conn.execute(f"LISTEN que_listener_{pid}")
    conn.execute(f"LISTEN que_listener_{other}")
    insert_job(other_conn)
    expected = insert_job(other_conn, queue="other")
    got = collect(conn, 1)
    time.sleep(0.2)
    got += conn.notifications(0.2)
    assert [(n.channel, json.loads(n.payload)["id"]) for n in got] == [
        (f"que_listener_{other}", expected)
    ]


def test_job_notify_weights_lockers_by_worker_count(
    conn: Connection, other_conn: Connection
) -> None:
    # Two live sessions registered as lockers; any session may LISTEN on
    # their channels (revision 7.1 tells only lockers that are live sessions).
    big = conn.execute("SELECT pg_backend_pid()")[0][0]
    small = other_conn.execute("SELECT pg_backend_pid()")[0][0]
    add_locker(conn, big, worker_count=3)
    add_locker(conn, small, worker_count=1)
    conn.execute(f"LISTEN que_listener_{big}")
    conn.execute(f"LISTEN que_listener_{small}")

    jobs = 40  # consecutive ids: each run of 4 ids visits every worker slot once
    with other_conn.transaction():
        for _ in range(jobs):
            insert_job(other_conn)
    got = collect(conn, jobs)
    assert len(got) == jobs
    per_channel = {
        channel: sum(1 for n in got if n.channel == channel) for channel in {n.channel for n in got}
    }
    assert per_channel == {f"que_listener_{big}": 30, f"que_listener_{small}": 10}


def test_state_notify(conn: Connection, other_conn: Connection) -> None:
    conn.execute("LISTEN que_state")
    job_id = insert_job(other_conn, data=json.dumps({"tags": ["a", "b"]}))
    other_conn.execute("UPDATE que_jobs SET priority = 1 WHERE id = %s", (job_id,))  # same state
    other_conn.execute("UPDATE que_jobs SET finished_at = now() WHERE id = %s", (job_id,))
    with other_conn.transaction():
        other_conn.execute("SET LOCAL que.skip_notify = 'true'")
        other_conn.execute("UPDATE que_jobs SET expired_at = now() WHERE id = %s", (job_id,))
    other_conn.execute("DELETE FROM que_jobs WHERE id = %s", (job_id,))
    wrapped = insert_job(
        other_conn,
        job_class=ACTIVE_JOB_WRAPPER,
        args=json.dumps([{"job_class": "MailerJob"}]),
        run_at=datetime.now(timezone.utc) + timedelta(days=1),
    )

    got = collect(conn, 4)
    time.sleep(0.2)
    got += conn.notifications(0.2)
    messages = [json.loads(n.payload) for n in got]
    assert {n.channel for n in got} == {"que_state"}
    assert [(m["id"], m["previous_state"], m["current_state"]) for m in messages] == [
        (job_id, "nonexistent", "ready"),
        (job_id, "ready", "finished"),
        (job_id, "expired", "nonexistent"),
        (wrapped, "nonexistent", "scheduled"),
    ]
    first = messages[0]
    assert first["message_type"] == "job_change"
    assert (first["queue"], first["tags"], first["job_class"]) == ("default", ["a", "b"], "SomeJob")
    assert set(first) == {
        "message_type",
        "id",
        "queue",
        "tags",
        "run_at",
        "time",
        "job_class",
        "previous_state",
        "current_state",
    }
    assert messages[3]["job_class"] == "MailerJob"


def test_determine_job_state(conn: Connection) -> None:
    now = datetime.now(timezone.utc)
    cases: dict[str, dict[str, Any]] = {
        "ready": {},
        "scheduled": {"run_at": now + timedelta(hours=1)},
        "errored": {"error_count": 1},
        "finished": {"finished_at": now, "error_count": 2},
        "expired": {"expired_at": now, "finished_at": now},
    }
    for state, values in cases.items():
        job_id = insert_job(conn, **values)
        assert conn.execute(
            "SELECT que_determine_job_state(j) FROM que_jobs AS j WHERE j.id = %s", (job_id,)
        ) == [(state,)]


def test_tags_rule(conn: Connection) -> None:
    good: list[Any] = [[], ["a"], ["a", "b", "c", "d", "e"], ["x" * 98]]
    for tags in good:
        insert_job(conn, data=json.dumps({"tags": tags, "other": 1}))
    insert_job(conn, data=json.dumps({"no_tags": True}))
    # Que counts a tag's length on its JSON text, quotes included (so 98
    # characters of text at most); que-core keeps that rule.
    bad: list[Any] = [
        ["a", "b", "c", "d", "e", "f"],
        ["x" * 99],
        [1],
        [None],
        [["nested"]],
        "not-an-array",
        {"a": "b"},
    ]
    for tags in bad:
        with pytest.raises(errors.CheckViolation, match="valid_data"):
            insert_job(conn, data=json.dumps({"tags": tags}))
    assert conn.execute(
        "SELECT que_validate_tags(%s::jsonb), que_validate_tags(%s::jsonb)",
        (json.dumps(["ok"]), json.dumps(["ok", 5])),
    ) == [(True, False)]


@pytest.mark.parametrize(
    ("values", "constraint"),
    [
        ({"job_class": "J" * 201}, "job_class_length"),
        (
            {"job_class": ACTIVE_JOB_WRAPPER, "args": json.dumps([{"job_class": "W" * 201}])},
            "job_class_length",
        ),
        ({"queue": "q" * 101}, "queue_length"),
        ({"last_error_message": "m" * 501}, "error_length"),
        ({"last_error_backtrace": "b" * 10001}, "error_length"),
        ({"args": json.dumps({"a": 1})}, "valid_args"),
        ({"args": json.dumps("text")}, "valid_args"),
        ({"data": json.dumps([1])}, "valid_data"),
    ],
)
def test_job_check_constraints(conn: Connection, values: dict[str, Any], constraint: str) -> None:
    with pytest.raises(errors.CheckViolation, match=constraint):
        insert_job(conn, **values)


def test_job_check_constraints_accept_the_limits(conn: Connection) -> None:
    insert_job(
        conn,
        job_class="J" * 200,
        queue="q" * 100,
        last_error_message="m" * 500,
        last_error_backtrace="b" * 10000,
        args=json.dumps([{"x": 1}]),
        kwargs=json.dumps({"k": [1, 2]}),
    )
    # The ActiveJob wrapper's own (long) name does not count: its job's does.
    insert_job(conn, job_class=ACTIVE_JOB_WRAPPER, args=json.dumps([{"job_class": "W" * 200}]))


def test_locker_and_values_constraints(conn: Connection) -> None:
    add_locker(conn, 1)
    with pytest.raises(errors.UniqueViolation):
        add_locker(conn, 1)
    with pytest.raises(errors.CheckViolation, match="valid_queues"):
        add_locker(conn, 2, queues="{}")
    with pytest.raises(errors.CheckViolation, match="valid_queues"):
        add_locker(conn, 3, queues="{{a},{b}}")
    with pytest.raises(errors.CheckViolation, match="valid_worker_priorities"):
        conn.execute(
            "INSERT INTO que_lockers (pid, worker_count, worker_priorities, ruby_pid, "
            "ruby_hostname, queues, listening) VALUES (4, 1, '{}', 1, 'h', '{default}', true)"
        )
    conn.execute(
        "INSERT INTO que_lockers (pid, worker_count, worker_priorities, ruby_pid, "
        "ruby_hostname, queues, listening) VALUES (5, 1, '{1}', 1, 'h', '{default}', true)"
    )
    assert conn.execute("SELECT job_schema_version FROM que_lockers WHERE pid = 5") == [(1,)]

    conn.execute("INSERT INTO que_values (key) VALUES ('k')")
    assert conn.execute("SELECT value FROM que_values WHERE key = 'k'") == [({},)]
    with pytest.raises(errors.CheckViolation, match="valid_value"):
        conn.execute("INSERT INTO que_values (key, value) VALUES ('l', '[]')")


def test_revision_7_1_comes_with_version_7_and_goes_before_6(empty_conn: Connection) -> None:
    from que_core.migrations import LATEST_REVISION, current_revision, require_latest

    assert migrate(empty_conn) == 7
    assert current_revision(empty_conn) == LATEST_REVISION
    require_latest(empty_conn)
    assert migrate(empty_conn, 6) == 6
    assert current_revision(empty_conn) == 0
    source = empty_conn.execute("SELECT prosrc FROM pg_proc WHERE proname = 'que_job_notify'")
    assert "pg_stat_get_activity" not in source[0][0]
    # Version 7 as Ruby Que's migrations leave it: no que-core revision.
    empty_conn.execute(resources.files("que_core.migrations").joinpath("7/up.sql").read_text())
    empty_conn.execute("COMMENT ON TABLE que_jobs IS '7'")
    assert (current_version(empty_conn), current_revision(empty_conn)) == (7, 0)
    with pytest.raises(errors.SchemaError,
                       match=rf"without que-core's revision {LATEST_REVISION} .*que migrate"):
        require_latest(empty_conn)
    assert migrate(empty_conn) == 7
    assert current_revision(empty_conn) == LATEST_REVISION
    source = empty_conn.execute("SELECT prosrc FROM pg_proc WHERE proname = 'que_job_notify'")
    assert "pg_stat_get_activity" in source[0][0]
