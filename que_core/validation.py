"""Checks on enqueue arguments: bad input raises before anything is written."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from typing import Any

from que_core.errors import ConfigurationError, InvalidJob

SMALLINT = (-32768, 32767)
MAX_QUEUE = 100
MAX_TAGS = 5
MAX_TAG = 100
MAX_JOB_CLASS = 200
MAX_UNIQUE_KEY = 200
#: How deep lists and dicts may nest in an argument: far more than any job
#: needs, and far below Python's recursion limit, so that every reader
#: (the worker, ``que jobs``, json) can load the row back.
MAX_DEPTH = 100


_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def _lone_surrogate(text: str) -> bool:
    """Whether *text* holds a lone surrogate (from ``surrogateescape``, say),
    which UTF-8, and so PostgreSQL, cannot encode."""
    if text.isascii():
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


#: The head of the path of a job's return value (a kept result), in messages.
RETURNED = object()


def _where(path: tuple[Any, ...]) -> str:
    """``argument 0[2]['key']`` for the path (0, 2, 'key'); a keyword argument's
    path starts with its name, a kept result's with :data:`RETURNED`."""
    head, *rest = path
    if head is RETURNED:
        name = "the value run() returned"
    else:
        name = f"argument {head}" if isinstance(head, int) else f"keyword argument {head!r}"
    return name + "".join(f"[{p!r}]" for p in rest)


def _walk(value: Any, path: tuple[Any, ...]) -> Any:
    """Return *value* as plain JSON data, or raise naming what is wrong and
    where (*path*: the argument, then the keys and indexes into it)."""
    kind = type(value)
    if value is None or kind is int or kind is bool:
        return value
    if kind is str and value.isascii() and "\x00" not in value:
        return value  # the usual strings, spared the checks below
    if isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidJob(f"{_where(path)} is {value!r}, which JSON cannot represent")
        return value
    if isinstance(value, str):
        if "\x00" in value:
            raise InvalidJob(f"{_where(path)} contains a NUL character, which PostgreSQL "
                             "jsonb refuses")
        if _lone_surrogate(value):
            raise InvalidJob(f"{_where(path)} contains a lone surrogate, which UTF-8 cannot "
                             "encode")
        return value
    if isinstance(value, (list, tuple, dict)) and len(path) > MAX_DEPTH:
        raise InvalidJob(f"{_where(path[:1])} is nested more than {MAX_DEPTH} levels deep")
    if isinstance(value, (list, tuple)):
        return [_walk(v, (*path, i)) for i, v in enumerate(value)]
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise InvalidJob(f"{_where(path)} has key {k!r}: JSON object keys must be "
                                 "strings")
            if "\x00" in k:
                raise InvalidJob(f"{_where(path)} has a key containing a NUL character")
            if _lone_surrogate(k):
                raise InvalidJob(f"{_where(path)} has a key containing a lone surrogate")
            out[k] = _walk(v, (*path, k))
        return out
    raise InvalidJob(
        f"{_where(path)} is {value!r} of type {type(value).__name__}, which is not "
        "JSON-serialisable"
    )


def depth(value: Any) -> int:
    """How deep lists and dicts nest in *value* (0 for a scalar), without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, (list, tuple, dict)):
            deepest = max(deepest, level)
            stack.extend((v, level + 1) for v in (item.values() if isinstance(item, dict)
                                                   else item))
    return deepest


def check_args(
    args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[list[Any], dict[str, Any]]:
    """Job arguments as plain JSON data, checked to round-trip exactly."""
    a = [_walk(v, (i,)) for i, v in enumerate(args)]
    k = {}
    for name, v in kwargs.items():
        if not isinstance(name, str):
            raise InvalidJob(f"keyword argument name {name!r} is not a string")
        if "\x00" in name:
            raise InvalidJob(f"keyword argument name {name!r} contains a NUL character")
        if _lone_surrogate(name):
            raise InvalidJob(f"keyword argument name {name!r} contains a lone surrogate")
        k[name] = _walk(v, (name,))
    return a, k


def check_result(value: Any) -> Any:
    """A job's return value as plain JSON data (its result is kept), or
    :class:`InvalidJob` naming what cannot be stored and its type."""
    return _walk(value, (RETURNED,))


def check_unique_key(value: Any) -> str:
    """A unique key: a non-empty string of at most 200 characters."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InvalidJob(f"unique key {value!r} is a {type(value).__name__}, not a string")
    text = check_text(str(value), "unique key", MAX_UNIQUE_KEY)
    if not text:
        raise InvalidJob("unique key is empty")
    return text


def dumps(value: Any) -> str:
    """*value* as JSON text that jsonb gives back exactly.

    jsonb keeps a number's digits, not the way it was written: the float
    1e16, which Python writes ``1e+16``, would come back as the integer
    10000000000000000 (and 1.7976931348623157e308 as an integer of another
    value). Such floats are written out in full with ``.0``, which jsonb
    keeps. Only text that has an ``e+`` somewhere takes the slow path.
    """
    text = _ENCODER.encode(value)
    if "e+" in text:
        text = "".join(_encode(value))
    return text


def _encode(value: Any) -> Iterator[str]:
    if isinstance(value, float):
        text = repr(value)
        if "e+" in text:  # |value| >= 1e16: an integer, written out
            text = format(Decimal(text), "f") + ".0"
        yield text
    elif isinstance(value, (list, tuple)):
        yield "["
        for i, v in enumerate(value):
            if i:
                yield ","
            yield from _encode(v)
        yield "]"
    elif isinstance(value, dict):
        yield "{"
        for i, (k, v) in enumerate(value.items()):
            yield ("," if i else "") + json.dumps(k, ensure_ascii=False) + ":"
            yield from _encode(v)
        yield "}"
    else:
        yield json.dumps(value, ensure_ascii=False)


def check_text(value: Any, what: str, limit: int) -> str:
    if not isinstance(value, str):
        raise InvalidJob(f"{what} must be a string, not {value!r}")
    if len(value) > limit:
        raise InvalidJob(
            f"{what} {value[:40]!r}... is {len(value)} characters; the limit is {limit}"
        )
    if "\x00" in value:
        raise InvalidJob(f"{what} {value!r} contains a NUL character")
    if _lone_surrogate(value):
        raise InvalidJob(f"{what} {value!r} contains a lone surrogate, which UTF-8 cannot encode")
    return value


def check_priority(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidJob(f"priority must be an integer, not {value!r}")
    if not SMALLINT[0] <= value <= SMALLINT[1]:
        raise InvalidJob(
            f"priority {value} is outside the smallint range {SMALLINT[0]}..{SMALLINT[1]}"
        )
    return value


def check_queue(value: Any) -> str:
    return check_text(value, "queue name", MAX_QUEUE)


def check_max_run_time(value: Any, where: str) -> float | None:
    """A run-time limit: None (none), or a positive, finite number of seconds."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
        0 < value < float("inf")
    ):
        raise ConfigurationError(
            f"{where}: max_run_time {value!r} must be a positive number of seconds, or None"
        )
    return float(value)


def check_tags(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise InvalidJob(f"tags must be a list of strings, not {value!r}")
    if len(value) > MAX_TAGS:
        raise InvalidJob(
            f"{len(value)} tags given ({list(value)!r}); at most {MAX_TAGS} are allowed"
        )
    tags = [check_text(t, "tag", MAX_TAG) for t in value]
    for tag in tags:
        # Que's que_validate_tags measures each tag as JSON text, quotes included.
        encoded = json.dumps(tag, ensure_ascii=False)
        if len(encoded) > MAX_TAG:
            raise InvalidJob(
                f"tag {tag[:40]!r}... is {len(encoded)} characters as JSON (quotes and "
                f"escapes included); the limit is {MAX_TAG}"
            )
    return tags


def check_run_at(value: Any) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise InvalidJob(f"run_at must be a datetime, not {value!r}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidJob(
            f"run_at {value.isoformat()} has no timezone; pass an aware datetime "
            "(e.g. datetime.now(timezone.utc))"
        )
    return value


def check_job_name(value: Any) -> str:
    return check_text(value, "job class name", MAX_JOB_CLASS)
