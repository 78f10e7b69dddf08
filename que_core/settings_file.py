"""The ``que`` command's settings and where each one came from.

Every setting is looked up in this order, the first one found wins:

1. a command-line flag (``--dsn``, ``--workers``, ...);
2. an environment variable (``QUE_DSN`` or ``DATABASE_URL``, ``QUE_WORKERS``, ...);
3. the ``[tool.que]`` table of ``pyproject.toml`` (the first one found in the
   current directory or above it; refused when another user owns it, or
   everyone may write to it: :func:`check_owner`);
4. the built-in default.

The settings themselves (names, flags, variables, types, defaults) are
defined in :mod:`que_core.options`. :func:`resolve` returns every setting
with its value and its source, which ``que config`` prints (passwords masked).
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from que_core.errors import ConfigurationError
from que_core.options import LOG_FORMATS, LOG_LEVELS, SPECS, SPECS_BY_NAME, Spec

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]

__all__ = ["LOG_FORMATS", "LOG_LEVELS", "SPECS", "SPECS_BY_NAME", "Spec", "Value", "resolve"]


@dataclass(frozen=True)
class Value:
    """A setting's effective value and where it came from."""

    value: Any
    #: ``flag --workers``, ``env QUE_WORKERS``, ``pyproject <path>`` or ``default``.
    source: str


def find_pyproject(start: Path | None = None) -> Path | None:
    """The first ``pyproject.toml`` in *start* (default: the current
    directory) or one of its parents."""
    here = (start or Path.cwd()).resolve()
    for directory in (here, *here.parents):
        candidate = directory / "pyproject.toml"
        try:
            if candidate.is_file():
                return candidate
        except OSError:  # a directory this user may not look into: none there for it
            continue
    return None


def _user(uid: int) -> str:
    try:
        import pwd

        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except (ImportError, KeyError):
        return f"uid {uid}"


def check_owner(path: Path, st: os.stat_result) -> None:
    """Refuse a settings file that another user could have written: one not
    owned by the user running que (or root), or writable by everyone. Its
    ``modules`` would run as this user, its ``dsn`` take this user's jobs."""
    if not hasattr(os, "geteuid"):  # Windows: no such owners
        return
    me = os.geteuid()
    if st.st_uid not in (me, 0):
        you = "you (root)" if me == 0 else f"you ({_user(me)}) or root"
        why = f"it is owned by {_user(st.st_uid)}, not by {you}"
    elif st.st_mode & stat.S_IWOTH:
        why = "every user may write to it"
    else:
        return
    raise ConfigurationError(
        f"refusing the settings in {path}: {why}, and its [tool.que] could run code "
        "(modules) or pick the database (dsn) for you. Change its owner or mode, or run "
        "que from a directory without it."
    )


def read_pyproject(path: Path) -> dict[str, Any]:
    """The ``[tool.que]`` table of *path* (empty when it has none), after
    :func:`check_owner`."""
    try:
        with path.open("rb") as f:
            check_owner(path, os.fstat(f.fileno()))
            data = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigurationError(f"cannot read {path}: {exc}") from None
    table = data.get("tool", {}).get("que", {})
    if not isinstance(table, dict):
        raise ConfigurationError(f"{path}: [tool.que] must be a table")
    unknown = sorted(set(table) - set(SPECS_BY_NAME))
    if unknown:
        raise ConfigurationError(
            f"{path}: unknown [tool.que] setting(s): {', '.join(unknown)} "
            f"(known: {', '.join(SPECS_BY_NAME)})"
        )
    return table


def _convert(spec: Spec, raw: Any, where: str) -> Any:
    try:
        return spec.convert(raw)
    except (ValueError, TypeError) as exc:
        shown = "****" if spec.secret else repr(raw)
        raise ConfigurationError(f"bad value {shown} for {spec.name} ({where}): {exc}") from None


def resolve(
    flags: Mapping[str, Any],
    environ: Mapping[str, str] | None = None,
    pyproject: Path | bool | None = True,
) -> dict[str, Value]:
    """Every setting's value and source.

    *flags* maps setting names to what the command line gave (None, or an
    empty tuple, when the flag was not given). *pyproject* is the file to
    read, True to look for one from the current directory up, or False for
    none.
    """
    env = os.environ if environ is None else environ
    path = find_pyproject() if pyproject is True else (pyproject or None)
    table = read_pyproject(path) if path is not None else {}
    out: dict[str, Value] = {}
    for spec in SPECS:
        given = flags.get(spec.name)
        if given is not None and given != () and given != []:
            out[spec.name] = Value(
                _convert(spec, list(given) if isinstance(given, tuple) else given, spec.flag),
                f"flag {spec.flag}" if spec.flag != "MODULES" else "arguments",
            )
            continue
        for var in spec.env:
            if env.get(var, "") != "":
                out[spec.name] = Value(_convert(spec, env[var], f"${var}"), f"env {var}")
                break
        else:
            if spec.name in table:
                out[spec.name] = Value(
                    _convert(spec, table[spec.name], f"[tool.que] in {path}"),
                    f"pyproject {path}",
                )
            else:
                out[spec.name] = Value(spec.default, "default")
    return out
