"""queries.sql: named statements and the fragments they include."""

from __future__ import annotations

import re

import pytest

from que_core.sql import parse, queries


def test_fragments_are_included_in_place_and_not_statements() -> None:
    text = (
        "-- fragment: cols\n-- a comment {{nothing}}\na, b\n"
        "-- fragment: base\nSELECT {{cols}} FROM t\n"
        "-- name: one\n-- Params: none\n{{base}} WHERE a = %s\n"
    )
    assert parse(text) == {"one": "SELECT a, b FROM t WHERE a = %s"}


def test_fragments_with_parameters_take_the_sql_given() -> None:
    text = (
        "-- fragment: twice(x, y)\nx + x AS y\n"
        "-- name: one\nSELECT {{twice(t.a, a2)}}, {{twice(1, xy)}} FROM t\n"
    )
    assert parse(text) == {"one": "SELECT t.a + t.a AS a2, 1 + 1 AS xy FROM t"}


@pytest.mark.parametrize("text, message", [
    ("-- fragment: f(a)\na\n-- name: one\n{{f}}\n", "'f' takes 1 argument(s), 'one' gives 0"),
    ("-- name: one\nSELECT {{nope}}\n", "unknown fragment 'nope' in 'one'"),
    ("-- fragment: f\n{{f}}\n-- name: one\n{{f}}\n", "fragment 'f' includes itself"),
    ("-- name: one\nSELECT 1\n-- fragment: one\n2\n", "'one' is defined twice"),
])
def test_bad_files_are_refused_by_name(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse(text)


def test_every_statement_of_the_shipped_file_is_complete() -> None:
    found = queries()
    assert "admin_delete_jobs" in found and "admin_jobs" not in found
    for name, sql in found.items():
        assert "{{" not in sql and "--" not in sql.splitlines()[0], name
    # The shared admin view is written once and used by every admin statement.
    running = "WHEN q.id IN (SELECT id FROM locked) THEN 'running'"
    uses = [n for n, s in found.items() if running in s and "shown_class" in s]
    assert sorted(uses) == ["admin_cancel_jobs", "admin_count_jobs", "admin_delete_jobs",
                            "admin_expire_jobs",
                            "admin_list_jobs", "admin_page_jobs", "admin_queues",
                            "admin_retry_jobs", "admin_stats"]
