"""Loads the named statements of ``queries.sql``: SQL lives in one file.

A block headed ``-- name: x`` is a statement; one headed ``-- fragment: x``
is a piece of SQL that statements (and other fragments) include as
``{{x}}``, so that a view or filter shared by several statements is written
once. Lines that start with ``--`` are comments and are dropped.
"""

from __future__ import annotations

import re
from functools import cache
from importlib.resources import files

_HEAD = re.compile(r"^-- (name|fragment): (\w+)\s*$", re.M)
_INCLUDE = re.compile(r"\{\{(\w+)\}\}")


def _strip(body: str) -> str:
    lines = [ln for ln in body.strip().splitlines() if not ln.lstrip().startswith("--")]
    return "\n".join(lines).strip()


def parse(text: str) -> dict[str, str]:
    """The statements of *text* by name, fragments included in place."""
    parts = _HEAD.split(text)
    statements: dict[str, str] = {}
    fragments: dict[str, str] = {}
    for kind, name, body in zip(parts[1::3], parts[2::3], parts[3::3], strict=True):
        target = statements if kind == "name" else fragments
        if name in statements or name in fragments:
            raise ValueError(f"queries.sql: {name!r} is defined twice")
        target[name] = _strip(body)

    def expand(sql: str, seen: tuple[str, ...]) -> str:
        def one(m: re.Match[str]) -> str:
            name = m.group(1)
            if name not in fragments:
                raise ValueError(f"queries.sql: unknown fragment {name!r} in {seen[0]!r}")
            if name in seen:
                raise ValueError(f"queries.sql: fragment {name!r} includes itself")
            return expand(fragments[name], (*seen, name))

        return _INCLUDE.sub(one, sql)

    return {name: expand(sql, (name,)) for name, sql in statements.items()}


@cache
def queries() -> dict[str, str]:
    return parse(files("que_core").joinpath("queries.sql").read_text(encoding="utf-8"))


def q(name: str) -> str:
    """The statement called *name* in queries.sql."""
    return queries()[name]
