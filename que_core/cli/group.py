"""The ``que`` group, its exit codes, and que-core errors turned into them.

Settings come from flags, then environment variables (``QUE_DSN`` or
``DATABASE_URL``, ``QUE_*``), then ``[tool.que]`` in pyproject.toml
(:mod:`que_core.settings_file`); ``que config`` shows them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import click

from que_core import foreground
from que_core.dsn import mask_password
from que_core.errors import CannotConnect, ConfigurationError, QueError, SchemaError

#: Exit codes scripts can rely on.
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_CANNOT_CONNECT = 3
EXIT_SCHEMA = 4
EXIT_UNFINISHED = foreground.EXIT_UNFINISHED
EXIT_SECOND_SIGNAL = foreground.EXIT_SECOND_SIGNAL

EPILOG = """\b
Settings: flags, then environment variables (QUE_DSN or DATABASE_URL,
QUE_*), then [tool.que] in pyproject.toml; `que config` shows each one
and where it came from.

\b
Exit codes:
  0  success
  1  error: a job that does not exist, a declined confirmation, a
     database error, a worker that stopped unexpectedly
  2  bad usage or configuration: unknown command or flag, bad value
     (flag, environment variable or [tool.que]), missing DSN
  3  cannot connect to the database
  4  the database has no que schema (run `que migrate`), an older one,
     or one newer than this que-core knows
  5  que work: the shutdown deadline passed with jobs unfinished (they
     will be worked again)
  6  que work: a second SIGINT/SIGTERM made it exit at once
"""

SHORT_EPILOG = (
    "Exit codes: 0 ok, 1 error, 2 bad usage or configuration, 3 cannot connect, "
    "4 schema missing, old or too new; que work: 5 jobs unfinished at the shutdown "
    "deadline, 6 a second signal (see `que --help`)."
)

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class QueCliError(click.ClickException):
    """An error message and the exit code that goes with it."""

    def __init__(self, message: str, exit_code: int = EXIT_ERROR) -> None:
        super().__init__(mask_password(message))
        self.exit_code = exit_code  # type: ignore[misc]


@contextmanager
def errors(edit: Callable[[str], str] = str) -> Iterator[None]:
    """Turn que-core exceptions into messages (passwords masked) and exit codes;
    *edit* rewrites each message."""
    try:
        yield
    except CannotConnect as exc:
        raise QueCliError(edit(str(exc)), EXIT_CANNOT_CONNECT) from None
    except SchemaError as exc:
        raise QueCliError(edit(str(exc)), EXIT_SCHEMA) from None
    except ConfigurationError as exc:
        raise QueCliError(edit(str(exc)), EXIT_USAGE) from None
    except QueError as exc:
        raise QueCliError(edit(str(exc)), EXIT_ERROR) from None


@click.group(context_settings=CONTEXT, epilog=EPILOG)
@click.version_option(package_name="que-core")
def main() -> None:
    """que-core: a PostgreSQL job queue (schema shared with Ruby's Que 2.x)."""
