"""Text from the database made safe to print: on a terminal or in a log file,
another program's job class, queue, error message or host name must not
move the cursor, ring the bell or start a line of its own.

Controls (C0, DEL, C1: ESC, CR, BEL, U+0085 ...) and the Unicode line and
paragraph separators become visible escapes (``\\n``, ``\\x1b``, ``\\u2028``);
tab is kept. :func:`rough_age` puts a number of seconds in words.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

_UNSAFE = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")
# What json.dumps(ensure_ascii=False) leaves raw: it escapes only C0.
_JSON_UNSAFE = re.compile("[\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r"}


def _escaped(m: re.Match[str]) -> str:
    c = m[0]
    return _NAMED.get(c) or (f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}")


def escape(text: str) -> str:
    """*text* on one line, with every control and line separator escaped."""
    if text.isprintable():  # none of them (the usual case, and a C loop)
        return text
    return _UNSAFE.sub(_escaped, text)


def escape_lines(text: str, indent: str = "  ") -> str:
    """Multi-line *text* (a traceback) kept on its lines, each escaped, every
    line after the first indented: none of them can pass for a line of its own."""
    if "\n" not in text:
        return escape(text)
    first, *rest = text.split("\n")
    return "\n".join([escape(first), *(indent + escape(line) for line in rest)])


def dumps(value: Any) -> str:
    """*value* as one line of JSON that ``str.splitlines()`` and terminals
    leave whole: non-ASCII kept, controls and line separators as ``\\uXXXX``."""
    text = json.dumps(value, ensure_ascii=False, default=str)
    return _JSON_UNSAFE.sub(lambda m: f"\\u{ord(m[0]):04x}", text)



def rough_age(seconds: float | None, steps: Sequence[tuple[float, float, str]],
              last: tuple[float, str]) -> str:
    """*seconds* by the first of *steps* (below, unit, format) it is below, else
    by *last* (unit, format): ``format.format(seconds / unit)``; None -> ``"-"``."""
    if seconds is None:
        return "-"
    unit, fmt = next(((u, f) for below, u, f in steps if seconds < below), last)
    return fmt.format(seconds / unit)
