"""One command run's settings, the flags that give them, and its connection."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import click

from que_core import options, settings_file
from que_core.cli.group import EXIT_USAGE, QueCliError, errors
from que_core.connection import Connection
from que_core.dsn import check_dsn, mask_password

log = logging.getLogger("que_core.cli")

_CONNECT_TIMEOUT = re.compile(r"(^|[?&\s])connect_timeout\s*=", re.I)


def with_connect_timeout(dsn: str, seconds: int) -> str:
    """*dsn* with libpq's ``connect_timeout`` added, unless it has one (or *seconds* is 0).

    Every adapter honours it (psycopg and psycopg2 through libpq, pg8000 as
    its socket timeout while connecting), so a server that does not answer
    fails within that many seconds instead of the operating system's minutes.
    """
    if not seconds or _CONNECT_TIMEOUT.search(dsn):
        return dsn
    if "://" in dsn:
        return f"{dsn}{'&' if '?' in dsn else '?'}connect_timeout={seconds}"
    return f"{dsn} connect_timeout={seconds}".strip()


class Settings:
    """The resolved settings of one command run."""

    def __init__(self, flags: dict[str, Any], **where: Any) -> None:
        """*where*: :func:`settings_file.resolve`'s ``environ`` and ``pyproject``."""
        with errors():
            self.values = settings_file.resolve(flags, **where)
        self._dsn: str | None = None
        self._given_dsn: str | None = None

    def __getitem__(self, name: str) -> Any:
        return self.values[name].value

    def embedded_dir(self) -> Path:
        from que_core import embedded

        value = self["embedded_dir"]
        return Path(value).expanduser() if value else embedded.default_data_dir()

    def setup_logging(self, pid: bool = False) -> None:
        from que_core import logs

        logs.setup(self["log_level"], self["log_format"], pid=pid)

    def dsn(self) -> str:
        """The DSN to connect with: the embedded server's with ``--embedded``."""
        if self._dsn is not None:
            return self._dsn
        if self["embedded"]:
            from que_core import embedded

            data_dir = self.embedded_dir()
            click.echo(
                f"embedded PostgreSQL: data directory {data_dir} (kept and reused between "
                f"runs; set QUE_EMBEDDED_DIR or --embedded-dir to move it)",
                err=True,
            )
            with errors():
                dsn = embedded.start(data_dir)
            log.debug("embedded PostgreSQL: %s", dsn)
        else:
            dsn = self["dsn"]
            if not dsn:
                raise QueCliError(
                    "no database given: pass --dsn, set QUE_DSN or DATABASE_URL, set dsn in "
                    "[tool.que] of pyproject.toml, or use --embedded",
                    EXIT_USAGE,
                )
            with errors():
                dsn = check_dsn(dsn, self.values["dsn"].source)
        self._given_dsn = dsn
        self._dsn = with_connect_timeout(dsn, self["connect_timeout"])
        return self._dsn

    def errors(self) -> AbstractContextManager[None]:
        """:func:`~que_core.cli.group.errors` for connecting: messages name the DSN
        as the user gave it, not with the ``connect_timeout`` added for them."""

        def as_given(message: str) -> str:
            if self._dsn and self._given_dsn is not None and self._dsn != self._given_dsn:
                return message.replace(mask_password(self._dsn), mask_password(self._given_dsn))
            return message

        return errors(as_given)

    def adapter(self) -> Any:
        from que_core.plugins import get_adapter

        with errors():
            return get_adapter(self["adapter"])

    def connect(self, check_schema: bool = True) -> Any:
        """A connection, checked for a schema this que-core works with."""
        from que_core import admin

        adapter = self.adapter()
        dsn = self.dsn()
        with self.errors():
            conn = adapter.connect(dsn)
            if check_schema:
                try:
                    admin.check_schema(conn)
                except BaseException:
                    conn.close()
                    raise
        return conn

    @contextmanager
    def session(self, check_schema: bool = True) -> Iterator[Connection]:
        """Logging set up, a connection (:meth:`connect`) for the block, que-core
        errors turned into exit codes, the connection closed after."""
        self.setup_logging()
        conn = self.connect(check_schema)
        try:
            with errors():
                yield conn
        finally:
            conn.close()


def env_help(name: str) -> str:
    """A setting's help text, with its variables, its [tool.que] key and default."""
    spec = options.SPECS_BY_NAME[name]
    env = " or ".join(f"${v}" for v in spec.env)
    default = spec.default
    if isinstance(default, list):
        default = ",".join(default) if default else None
    shown = "" if default in (None, False) else f"; default {default}"
    return f"{spec.help[0].upper()}{spec.help[1:]} [{env}; [tool.que] {name}{shown}]"


def _apply(f: Callable[..., Any], decorators: list[Callable[[Any], Any]]) -> Callable[..., Any]:
    for decorator in reversed(decorators):
        f = decorator(f)
    return f


def connection_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """--dsn, --adapter, --embedded, --embedded-dir, --connect-timeout, logging."""
    return _apply(f, [
        click.option("--dsn", default=None, metavar="DSN", help=env_help("dsn")),
        click.option("--adapter", default=None, help=env_help("adapter")),
        click.option("--embedded/--no-embedded", default=None,
                     help=env_help("embedded") + " (data kept between runs)"),
        click.option("--embedded-dir", default=None, metavar="DIR",
                     help=env_help("embedded_dir") + " [default ~/.local/share/que-core/pgdata;"
                     " as root /var/lib/que-core/pgdata]"),
        click.option("--connect-timeout", type=click.IntRange(min=0), default=None,
                     metavar="SECONDS", help=env_help("connect_timeout")),
        click.option("--log-level", default=None,
                     type=click.Choice(options.LOG_LEVELS, case_sensitive=False),
                     help=env_help("log_level")),
        click.option("--log-format", default=None,
                     type=click.Choice(options.LOG_FORMATS, case_sensitive=False),
                     help=env_help("log_format")),
    ])


_EXTRA_HELP = {"metrics_port": "; needs que-core's metrics extra"}


def worker_option_list(describe: Callable[[str], str]) -> list[Callable[[Any], Any]]:
    """The flags that shape a worker (``que work``'s, ``flask que work``'s), one per
    :data:`que_core.options.WORKER_SPECS`; *describe* gives each setting's help text."""
    out = []
    for spec in options.WORKER_SPECS:
        decls = [d for d in (spec.short, spec.flag, spec.name) if d]
        out.append(click.option(*decls, multiple=spec.multiple, type=spec.click_type,
                                default=None,
                                help=describe(spec.name) + _EXTRA_HELP.get(spec.name, "")))
    return out


def worker_options(f: Callable[..., Any]) -> Callable[..., Any]:
    def describe(name: str) -> str:
        if name == "queues":
            return env_help(name) + " (repeatable; $QUE_QUEUES is comma-separated)"
        return env_help(name)

    return _apply(f, worker_option_list(describe))


def json_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True,
                        help="Print JSON instead of text.")(f)
