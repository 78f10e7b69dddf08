"""Loads the named statements of ``queries.sql``: SQL lives in one file.

A block headed ``-- name: x`` is a statement; one headed ``-- fragment: x``
is a piece of SQL that statements (and other fragments) include as
``{{x}}``, so that a view or filter shared by several statements is written
once. A fragment may take parameters, ``-- fragment: x(a, b)``, included as
``{{x(j.col, 1)}}``: each parameter name (a whole word) in its body becomes
the SQL given. Lines that start with ``--`` are comments and are dropped.
"""

from __future__ import annotations

import re
from functools import cache
from importlib.resources import files
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from que_core.connection import Connection

_HEAD = re.compile(r"^-- (name|fragment): (\w+(?:\([\w, ]*\))?)\s*$", re.M)
_INCLUDE = re.compile(r"\{\{(\w+)(?:\(([^(){}]*)\))?\}\}")


def _split(text: str) -> list[str]:
    return [p.strip() for p in text.split(",")] if text.strip() else []


def _strip(body: str) -> str:
    lines = [ln for ln in body.strip().splitlines() if not ln.lstrip().startswith("--")]
    return "\n".join(lines).strip()


def parse(text: str) -> dict[str, str]:
    """The statements of *text* by name, fragments included in place."""
    parts = _HEAD.split(text)
    statements: dict[str, str] = {}
    fragments: dict[str, tuple[list[str], str]] = {}
    for kind, head, body in zip(parts[1::3], parts[2::3], parts[3::3], strict=True):
        name, _, params = head.partition("(")
        if name in statements or name in fragments:
            raise ValueError(f"queries.sql: {name!r} is defined twice")
        if kind == "name":
            statements[name] = _strip(body)
        else:
            fragments[name] = (_split(params.rstrip(")")), _strip(body))

    def expand(sql: str, seen: tuple[str, ...]) -> str:
        def one(m: re.Match[str]) -> str:
            name, args = m.group(1), _split(m.group(2) or "")
            if name not in fragments:
                raise ValueError(f"queries.sql: unknown fragment {name!r} in {seen[0]!r}")
            if name in seen:
                raise ValueError(f"queries.sql: fragment {name!r} includes itself")
            params, body = fragments[name]
            if len(args) != len(params):
                raise ValueError(f"queries.sql: fragment {name!r} takes {len(params)} "
                                 f"argument(s), {seen[-1]!r} gives {len(args)}")
            for param, arg in zip(params, args, strict=True):
                body = re.sub(rf"\b{param}\b", arg.replace("\\", "\\\\"), body)
            return expand(body, (*seen, name))

        return _INCLUDE.sub(one, sql)

    return {name: expand(sql, (name,)) for name, sql in statements.items()}


@cache
def queries() -> dict[str, str]:
    return parse(files("que_core").joinpath("queries.sql").read_text(encoding="utf-8"))


def q(name: str) -> str:
    """The statement called *name* in queries.sql."""
    return queries()[name]


def quoted(conn: Connection, name: str, identifier: str) -> str:
    """The statement that the named query makes for *identifier* (a database,
    schema or channel name: never a parameter), quoted by the server's
    ``format('%I')`` so that any name is safe."""
    ((sql,),) = conn.execute(q(name), (identifier,))
    return str(sql)
