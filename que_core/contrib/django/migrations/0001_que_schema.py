"""The que-core schema, version 7, made by que-core's own migrations.

Each later que-core schema version gets a migration of its own here, which
migrates to that version (and back to the one before), so ``manage.py
migrate`` and ``que migrate`` always agree. A database that ``que migrate``
already brought to the version is left as it is.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations

SCHEMA_VERSION = 7


def _que_connection(schema_editor: Any) -> Any:
    from que_core.contrib.django import db

    if schema_editor.connection.alias != db.database_alias():
        return None  # que-core lives in QUE['DATABASE'] only
    return db.wrap(schema_editor.connection)


def forwards(apps: Any, schema_editor: Any) -> None:
    from que_core.migrations import migrate

    conn = _que_connection(schema_editor)
    if conn is not None:
        migrate(conn, SCHEMA_VERSION)


def backwards(apps: Any, schema_editor: Any) -> None:
    from que_core.migrations import migrate

    conn = _que_connection(schema_editor)
    if conn is not None:
        migrate(conn, 0)  # no que schema


class Migration(migrations.Migration):
    initial = True
    dependencies: list[tuple[str, str]] = []
    operations = [migrations.RunPython(forwards, backwards, elidable=False)]
