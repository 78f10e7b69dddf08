"""COPY ... FROM STDIN rows in PostgreSQL's text format, for adapters whose
driver takes the data as a file (psycopg2, pg8000); psycopg 3 formats rows
itself. Values are None, int, str or an aware datetime, as
:meth:`que_core.connection.Connection.copy_in` gets them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

# Text format: backslash escapes for the characters that end a field or a row.
_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _field(value: Any) -> str:
    if value is None:
        return "\\N"
    if isinstance(value, str):
        return value.translate(_ESCAPES)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"cannot COPY a value of type {type(value).__name__}")
    return str(value)


def text(rows: Iterable[Sequence[Any]]) -> str:
    """*rows* as COPY text: tab-separated fields, one line a row."""
    return "".join("\t".join(map(_field, row)) + "\n" for row in rows)
