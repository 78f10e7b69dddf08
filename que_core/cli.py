"""The ``que`` command: work jobs, migrate, inspect and manage queues.

Settings come from flags, then environment variables (``QUE_DSN`` or
``DATABASE_URL``, ``QUE_*``), then ``[tool.que]`` in pyproject.toml
(:mod:`que_core.settings_file`); ``que config`` shows them. Exit codes are
listed in ``que --help`` and below.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import click

from que_core import foreground, settings_file
from que_core.dsn import check_dsn, mask_password
from que_core.errors import CannotConnect, ConfigurationError, QueError, SchemaError

log = logging.getLogger("que_core.cli")

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
def _errors(edit: Callable[[str], str] = str) -> Iterator[None]:
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


# -- settings -------------------------------------------------------------------

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

    def __init__(self, flags: dict[str, Any]) -> None:
        with _errors():
            self.values = settings_file.resolve(flags)
        self._dsn: str | None = None
        self._given_dsn: str | None = None

    def __getitem__(self, name: str) -> Any:
        return self.values[name].value

    def embedded_dir(self) -> Path:
        from que_core import embedded

        value = self["embedded_dir"]
        return Path(value).expanduser() if value else embedded.default_data_dir()

    def setup_logging(self) -> None:
        from que_core import logs

        logs.setup(self["log_level"], self["log_format"])

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
            with _errors():
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
            with _errors():
                dsn = check_dsn(dsn, self.values["dsn"].source)
        self._given_dsn = dsn
        self._dsn = with_connect_timeout(dsn, self["connect_timeout"])
        return self._dsn

    def errors(self) -> AbstractContextManager[None]:
        """:func:`_errors` for connecting: messages name the DSN as the user
        gave it, not with the ``connect_timeout`` added for them."""

        def as_given(message: str) -> str:
            if self._dsn and self._given_dsn is not None and self._dsn != self._given_dsn:
                return message.replace(mask_password(self._dsn), mask_password(self._given_dsn))
            return message

        return _errors(as_given)

    def adapter(self) -> Any:
        from que_core.plugins import get_adapter

        with _errors():
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


def _option(*decls: str, **kw: Any) -> Callable[[Any], Any]:
    return click.option(*decls, **kw)


def _env_help(name: str) -> str:
    spec = settings_file.SPECS_BY_NAME[name]
    env = " or ".join(f"${v}" for v in spec.env)
    default = spec.default
    if isinstance(default, list):
        default = ",".join(default) if default else None
    shown = "" if default in (None, False) else f"; default {default}"
    return f"{spec.help[0].upper()}{spec.help[1:]} [{env}; [tool.que] {name}{shown}]"


def connection_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """--dsn, --adapter, --embedded, --embedded-dir, --connect-timeout, logging."""
    decorators = [
        _option("--dsn", default=None, metavar="DSN", help=_env_help("dsn")),
        _option("--adapter", default=None, help=_env_help("adapter")),
        _option("--embedded/--no-embedded", default=None,
                help=_env_help("embedded") + " (data kept between runs)"),
        _option("--embedded-dir", default=None, metavar="DIR",
                help=_env_help("embedded_dir")
                + " [default ~/.local/share/que-core/pgdata; as root /var/lib/que-core/pgdata]"),
        _option("--connect-timeout", type=click.IntRange(min=0), default=None,
                metavar="SECONDS", help=_env_help("connect_timeout")),
        _option("--log-level", default=None,
                type=click.Choice(settings_file.LOG_LEVELS, case_sensitive=False),
                help=_env_help("log_level")),
        _option("--log-format", default=None,
                type=click.Choice(settings_file.LOG_FORMATS, case_sensitive=False),
                help=_env_help("log_format")),
    ]
    for decorator in reversed(decorators):
        f = decorator(f)
    return f


def worker_option_list(describe: Callable[[str], str]) -> list[Callable[[Any], Any]]:
    """The flags that shape a worker (``que work``'s, ``flask que work``'s); *describe*
    gives each setting's help text."""
    return [
        _option("-q", "--queue", "queues", multiple=True, help=describe("queues")),
        _option("-w", "--workers", type=click.IntRange(min=1), default=None,
                help=describe("workers")),
        _option("-p", "--priorities", default=None, help=describe("priorities")),
        _option("-i", "--poll-interval", type=click.FloatRange(min=0.001), default=None,
                help=describe("poll_interval")),
        _option("--batch-size", type=click.IntRange(min=1), default=None,
                help=describe("batch_size")),
        _option("--shutdown-timeout", type=click.FloatRange(min=0), default=None,
                help=describe("shutdown_timeout")),
        _option("--listen/--no-listen", default=None, help=describe("listen")),
        _option("--metrics-port", type=click.IntRange(0, 65535), default=None,
                help=describe("metrics_port") + "; needs que-core's metrics extra"),
        _option("--metrics-host", default=None, help=describe("metrics_host")),
    ]


def worker_options(f: Callable[..., Any]) -> Callable[..., Any]:
    def describe(name: str) -> str:
        if name == "queues":
            return _env_help(name) + " (repeatable; $QUE_QUEUES is comma-separated)"
        return _env_help(name)

    for decorator in reversed(worker_option_list(describe)):
        f = decorator(f)
    return f


def json_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True,
                        help="Print JSON instead of text.")(f)


def _echo_json(value: Any) -> None:
    from que_core.printable import dumps

    click.echo(dumps(value))


# -- the group ------------------------------------------------------------------


@click.group(context_settings=CONTEXT, epilog=EPILOG)
@click.version_option(package_name="que-core")
def main() -> None:
    """que-core: a PostgreSQL job queue (schema shared with Ruby's Que 2.x)."""


# -- migrate --------------------------------------------------------------------


@main.command(epilog=SHORT_EPILOG,
              short_help="Migrate the schema up or down; --status shows its version.")
@connection_options
@click.option("--to", "target", type=click.IntRange(min=0), default=None,
              help="Migrate up or down to this version (default: the latest).")
@click.option("--status", is_flag=True, help="Print the schema version and exit.")
@click.option("-y", "--yes", is_flag=True, help="Migrate down without asking.")
@json_option
def migrate(target: int | None, status: bool, yes: bool, as_json: bool, **opts: Any) -> None:
    """Bring the database to the latest que schema, or up or down --to a
    version; --status prints the version. Migrating down removes tables and
    columns (down to 0: everything), so it asks first."""
    from que_core.migrations import (
        LATEST_REVISION,
        LATEST_VERSION,
        current_revision,
        current_version,
    )
    from que_core.migrations import migrate as do_migrate

    if target is not None and target > LATEST_VERSION:
        raise click.BadParameter(
            f"{target}: versions go from 0 (no que schema) to {LATEST_VERSION}",
            param_hint="'--to'",
        )
    cfg = Settings(opts)
    cfg.setup_logging()
    conn = cfg.connect(check_schema=False)
    try:
        with _errors():
            before = current_version(conn)
            rev_before = current_revision(conn)
            if status:
                state = (
                    "missing" if before == 0
                    else "newer" if (before, rev_before) > (LATEST_VERSION, LATEST_REVISION)
                    else "current" if (before, rev_before) == (LATEST_VERSION, LATEST_REVISION)
                    else "older"
                )
                if as_json:
                    _echo_json({"version": before, "latest": LATEST_VERSION,
                                "revision": rev_before, "latest_revision": LATEST_REVISION,
                                "state": state})
                else:
                    notes = {
                        "missing": "no que schema: run `que migrate`",
                        "current": "up to date",
                        "older": "run `que migrate` to upgrade",
                        "newer": "newer than this que-core knows: upgrade que-core",
                    }
                    click.echo(
                        f"schema version {before}{_revision(before, rev_before)} (latest: "
                        f"{LATEST_VERSION}{_revision(LATEST_VERSION, LATEST_REVISION)}): "
                        f"{notes[state]}"
                    )
                return
            goal = LATEST_VERSION if target is None else target
            if before > LATEST_VERSION:
                raise SchemaError(
                    f"the que schema is at version {before}, newer than this que-core knows "
                    f"({LATEST_VERSION}): upgrade que-core"
                )
            if goal < before and not yes:
                click.confirm(
                    f"Migrate {mask_password(cfg.dsn())} DOWN from version {before} to {goal}? "
                    "This drops tables or columns and their data",
                    abort=True, err=True,
                )
            after = do_migrate(conn, goal)
            rev_after = current_revision(conn)
    finally:
        conn.close()
    if as_json:
        _echo_json({"from": before, "to": after, "latest": LATEST_VERSION,
                    "revision_from": rev_before, "revision_to": rev_after})
    elif (before, rev_before) == (after, rev_after):
        click.echo(f"schema already at version {after}{_revision(after, rev_after)}")
    elif before == after:
        click.echo(f"migrated que-core's revision of schema version {after} from "
                   f"{rev_before} to {rev_after}")
    else:
        click.echo(f"migrated schema from version {before} to {after}"
                   f"{_revision(after, rev_after)}")


def _revision(version: int, revision: int) -> str:
    from que_core.migrations import LATEST_VERSION

    return f", que-core revision {revision}" if version == LATEST_VERSION else ""


# -- work -----------------------------------------------------------------------


@main.command(epilog=SHORT_EPILOG, short_help="Work jobs until SIGINT/SIGTERM.")
@connection_options
@worker_options
@click.argument("modules", nargs=-1)
def work(modules: tuple[str, ...], **opts: Any) -> None:
    """Work jobs until SIGINT/SIGTERM. MODULES are imported first: the
    modules that define your Job classes ($QUE_MODULES, [tool.que] modules),
    from the installed modules, else from the current directory (which is
    not put on sys.path: nothing else is imported from it).

    A first SIGINT/SIGTERM stops taking jobs and lets running ones finish
    (for --shutdown-timeout seconds at most), then exits with status 0, or 5
    when the deadline passed with jobs unfinished (they will be worked again);
    a second one exits at once, with status 6.
    """
    from que_core.worker import Worker, parse_priorities

    cfg = Settings({**opts, "modules": modules})
    cfg.setup_logging()
    dsn = cfg.dsn()
    from que_core.job_modules import import_job_module

    for name in cfg["modules"]:
        try:
            import_job_module(name, Path.cwd())
        except ImportError as exc:
            raise QueCliError(f"cannot import job module {name!r}: {exc}", EXIT_USAGE) from None
        except Exception as exc:  # the module itself raised: a bug or a setting of the app
            raise QueCliError(f"cannot import job module {name!r}: {_raised(exc)}",
                              EXIT_USAGE) from None

    def start() -> Any:
        return Worker(
            dsn,
            adapter=cfg.adapter(),
            queues=cfg["queues"],
            worker_count=cfg["workers"],
            worker_priorities=parse_priorities(cfg["priorities"]) if cfg["priorities"] else None,
            poll_interval=cfg["poll_interval"],
            batch_size=cfg["batch_size"],
            listen=cfg["listen"],
            schedules=settings_file.read_schedules(),
        ).start()

    with cfg.errors():
        work_in_foreground(start, lambda w: bool(w.stop(timeout=cfg["shutdown_timeout"])),
                           cfg["metrics_port"], cfg["metrics_host"])


def work_in_foreground(start: Callable[[], Any], stop: Callable[[Any], bool],
                       metrics_port: int | None, metrics_host: str) -> None:
    """``que work`` once its settings are read (``flask que work`` too): *start*
    starts the worker and returns it, *stop* stops it; with *metrics_port*
    Prometheus metrics are served meanwhile. Exits as :mod:`que_core.foreground`
    says; que-core errors are raised."""
    metrics = None
    if metrics_port is not None:
        try:
            from que_core.contrib import prometheus
        except ImportError as exc:
            raise QueCliError(f"--metrics-port: {exc}", EXIT_USAGE) from None
        metrics = prometheus.install()

    def started() -> Any:
        worker = start()
        if metrics is not None and metrics_port is not None:
            try:
                metrics.serve(metrics_port, metrics_host)
            except OSError as exc:
                stop(worker)
                raise QueCliError(
                    f"cannot serve metrics on {metrics_host}:{metrics_port}: {exc}"
                ) from None
        return worker

    try:
        foreground.work_until_signalled(started, stop)
    finally:
        if metrics is not None:
            metrics.close()


def _raised(exc: BaseException) -> str:
    """``it raised RuntimeError: boom (at /app/jobs.py, line 3)``: the exception and
    where it was raised, in one line (the traceback is logged at debug level)."""
    log.debug("the traceback", exc_info=exc)
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, SyntaxError):  # its message names the file and line already
        return text
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if not f.filename.startswith("<frozen ")]
    where = f" (at {frames[-1].filename}, line {frames[-1].lineno})" if frames else ""
    return f"it raised {text}{where}"


# -- stats ----------------------------------------------------------------------


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{seconds / 60:.1f}m"
    if seconds < 86400:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]], right: set[int]) -> str:
    from que_core.printable import escape

    cells = [[str(h) for h in headers],
             *[["-" if v is None else escape(str(v)) for v in r] for r in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for row in cells:
        parts = [
            row[i].rjust(widths[i]) if i in right else row[i].ljust(widths[i])
            for i in range(len(headers))
        ]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


def _render_stats(s: Any) -> str:
    from que_core.admin import STATES
    from que_core.printable import escape

    headers = ["QUEUE", "CLASS", *(n.upper() for n in STATES), "OLDEST READY"]
    rows = [
        [r.queue, r.job_class, *(getattr(r, n) for n in STATES), _age(r.oldest_ready_age)]
        for r in s.rows
    ]
    if s.rows:
        t = s.totals()
        rows.append(["(all)", "", *(getattr(t, n) for n in STATES), _age(t.oldest_ready_age)])
    right = set(range(2, len(headers)))
    out = [_table(headers, rows, right) if s.rows else "no jobs"]
    threads = sum(lk.worker_count for lk in s.lockers)
    out.append(f"workers: {len(s.lockers)} process(es), {threads} thread(s)")
    for lk in s.lockers:
        out.append(escape(
            f"  pid {lk.process_pid} on {lk.hostname}: {lk.worker_count} threads, "
            f"queues {','.join(lk.queues)}{'' if lk.listening else ' (not listening)'}"
        ))
    return "\n".join(out)


@main.command(epilog=SHORT_EPILOG, short_help="Jobs per queue, class and state; worker processes.")
@connection_options
@click.option("--watch", is_flag=True, help="Refresh until Ctrl-C.")
@click.option("--interval", type=click.FloatRange(min=0.1), default=2.0, show_default=True,
              help="Seconds between refreshes with --watch.")
@json_option
def stats(watch: bool, interval: float, as_json: bool, **opts: Any) -> None:
    """Per queue and job class: jobs ready, scheduled, running (locked by a
    worker now), errored, expired and finished, and the age of the oldest
    ready job; then the worker processes. With --watch --json, one JSON
    object per line per refresh."""
    from que_core import admin

    cfg = Settings(opts)
    cfg.setup_logging()
    conn = cfg.connect()
    tty = sys.stdout.isatty()
    try:
        while True:
            with _errors():
                s = admin.stats(conn)
            now = datetime.now(timezone.utc).isoformat(timespec="seconds")
            if as_json:
                _echo_json({"time": now, **s.to_dict()})
            else:
                if watch and tty:
                    click.clear()
                if watch:
                    click.echo(f"{now} (every {interval:g}s, Ctrl-C to stop)")
                click.echo(_render_stats(s))
                if watch and not tty:
                    click.echo()
            if not watch:
                break
            sys.stdout.flush()
            time.sleep(interval)
    except KeyboardInterrupt:
        pass
    finally:
        conn.close()


# -- jobs -----------------------------------------------------------------------


class JsonParam(click.ParamType):  # type: ignore[type-arg, unused-ignore]
    name = "JSON"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str):
            return value
        from que_core.validation import MAX_DEPTH, depth

        try:
            parsed = json.loads(value)
        except ValueError as exc:
            self.fail(f"{value[:100]!r} is not JSON: {exc}", param, ctx)
        except RecursionError:
            parsed = None
        else:
            # No job's args nest deeper (the args array adds one level).
            if depth(parsed) <= MAX_DEPTH + 1:
                return parsed
        self.fail(f"{value[:40]!r}... is nested too deeply (at most {MAX_DEPTH + 1} levels)",
                  param, ctx)


def filter_options(f: Callable[..., Any]) -> Callable[..., Any]:
    from que_core.admin import STATES

    decorators = [
        _option("-q", "--queue", "queues", multiple=True, help="Only jobs of this queue "
                "(repeatable)."),
        _option("-c", "--class", "classes", multiple=True, metavar="CLASS",
                help="Only jobs of this job class (repeatable)."),
        _option("-s", "--state", "states", multiple=True, type=click.Choice(STATES),
                help="Only jobs in this state (repeatable)."),
        _option("-t", "--tag", default=None, help="Only jobs with this tag."),
        _option("--args", "args_json", type=JsonParam(), default=None,
                help='Only jobs whose args contain this JSON, e.g. \'[42]\' or \'[{"a": 1}]\'.'),
        _option("--kwargs", "kwargs_json", type=JsonParam(), default=None,
                help='Only jobs whose kwargs contain this JSON object, e.g. \'{"user": 7}\'.'),
    ]
    for decorator in reversed(decorators):
        f = decorator(f)
    return f


def _filter(ids: Sequence[int], opts: dict[str, Any]) -> Any:
    from que_core.admin import JobFilter

    return JobFilter(
        ids=list(ids),
        queues=list(opts.pop("queues", ()) or ()),
        classes=list(opts.pop("classes", ()) or ()),
        states=list(opts.pop("states", ()) or ()),
        tag=opts.pop("tag", None),
        args=opts.pop("args_json", None),
        kwargs=opts.pop("kwargs_json", None),
    )


@main.group(context_settings=CONTEXT, epilog=SHORT_EPILOG,
            short_help="List, show, retry, expire and delete jobs.")
def jobs() -> None:
    """List, show, retry, expire and delete jobs.

    States: ready, scheduled (run_at in the future), running (a worker holds
    it now), errored (failed, waiting for its retry), expired (out of
    retries), finished. Retry, expire and delete leave running jobs alone.
    """


@jobs.command("list", epilog=SHORT_EPILOG, short_help="List jobs, with filters.")
@connection_options
@filter_options
@click.option("-n", "--limit", type=click.IntRange(min=1), default=50, show_default=True,
              help="At most this many jobs (by id).")
@json_option
def jobs_list(limit: int, as_json: bool, **opts: Any) -> None:
    """List jobs, filtered by queue, class, state, tag and args containment."""
    from que_core import admin

    where = _filter((), opts)
    cfg = Settings(opts)
    cfg.setup_logging()
    conn = cfg.connect()
    try:
        with _errors():
            found = admin.list_jobs(conn, where, limit)
    finally:
        conn.close()
    if as_json:
        _echo_json(found)
        return
    if not found:
        click.echo("no jobs")
        return
    rows = [
        [j["id"], j["queue"], j["job_class"], j["state"], j["priority"], j["run_at"],
         j["error_count"], _short(j["last_error_message"], 60)]
        for j in found
    ]
    click.echo(_table(["ID", "QUEUE", "CLASS", "STATE", "PRIORITY", "RUN AT", "ERRORS",
                       "LAST ERROR"], rows, {0, 4, 6}))
    if len(found) == limit:
        click.echo(f"(first {limit}; use --limit for more)", err=True)


def _short(text: str | None, width: int) -> str | None:
    if text is None:
        return None
    from que_core.printable import escape

    text = escape(" ".join(text.split()))
    return text if len(text) <= width else text[: width - 1] + "…"


@jobs.command("show", epilog=SHORT_EPILOG, short_help="Show one job, its backtrace included.")
@connection_options
@click.argument("job_id", type=int)
@json_option
def jobs_show(job_id: int, as_json: bool, **opts: Any) -> None:
    """Show every field of job JOB_ID, its last error's backtrace included."""
    from que_core import admin

    cfg = Settings(opts)
    cfg.setup_logging()
    conn = cfg.connect()
    try:
        with _errors():
            job = admin.get_job(conn, job_id)
    finally:
        conn.close()
    if job is None:
        raise QueCliError(f"no job with id {job_id}")
    if as_json:
        _echo_json(job)
        return
    from que_core.printable import escape

    for key, value in job.items():
        if key == "last_error_backtrace":
            continue
        if isinstance(value, (dict, list)):
            value = json.dumps(value, ensure_ascii=False)
        click.echo(f"{key + ':':<21} {'-' if value is None else escape(str(value))}")
    if job["last_error_backtrace"]:
        click.echo("last_error_backtrace:")
        for line in str(job["last_error_backtrace"]).rstrip().split("\n"):
            click.echo(f"  {escape(line)}")


_VERBS = {
    "retry": ("retried", "Run {what} now"),
    "expire": ("expired", "Expire {what}"),
    "delete": ("deleted", "Delete {what}"),
    "clear": ("deleted", "Delete {what}"),
}


def _bulk_command(action: str, ids: Sequence[int], all_jobs: bool, yes: bool, as_json: bool,
                  opts: dict[str, Any]) -> None:
    from que_core import admin

    where = _filter(ids, opts)
    if not ids and where.empty and not all_jobs:
        raise QueCliError(
            f"say which jobs to {action}: job ids, filters (--queue, --class, --state, "
            "--tag, --args, --kwargs) or --all",
            EXIT_USAGE,
        )
    cfg = Settings(opts)
    cfg.setup_logging()
    conn = cfg.connect()
    missing: list[int] = []
    try:
        with _errors():
            if ids:
                present = {j["id"] for j in admin.list_jobs(conn, admin.JobFilter(ids=ids),
                                                              len(ids))}
                missing = sorted(set(ids) - present)
            else:
                matched, running = admin.count_jobs(conn, where)
                if matched == 0:
                    _bulk_report(action, admin.BulkResult(action, 0, 0, 0), [], as_json)
                    return
                if not yes:
                    what = f"{matched} job{'s' if matched != 1 else ''}"
                    note = f" ({running} running now: those are skipped)" if running else ""
                    click.confirm(_VERBS[action][1].format(what=what) + note + "?",
                                  abort=True, err=True)
            result = getattr(admin, f"{action}_jobs")(conn, where)
    finally:
        conn.close()
    _bulk_report(action, result, missing, as_json)
    if missing:
        raise QueCliError(f"no job with id {', '.join(map(str, missing))}")


def _bulk_report(action: str, result: Any, missing: list[int], as_json: bool) -> None:
    if as_json:
        _echo_json({**result.to_dict(), "not_found": missing})
        return
    done = _VERBS[action][0]
    line = f"{done} {result.changed} job{'s' if result.changed != 1 else ''}"
    notes = []
    if result.skipped_running:
        notes.append(f"{result.skipped_running} skipped: running now")
    other = result.matched - result.changed - result.skipped_running
    if other:
        notes.append(f"{other} unchanged: "
                     + ("already finished" if action == "retry" else "already finished or expired"))
    click.echo(line + (f" ({'; '.join(notes)})" if notes else ""))


def _bulk_options(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.argument("ids", nargs=-1, type=int)(f)
    f = connection_options(f)
    f = filter_options(f)
    f = click.option("--all", "all_jobs", is_flag=True, help="Every job (no filter).")(f)
    f = click.option("-y", "--yes", is_flag=True,
                     help="Do not ask for confirmation (filter forms ask).")(f)
    return json_option(f)


@jobs.command("retry", epilog=SHORT_EPILOG, short_help="Run jobs now, by id or filter.")
@_bulk_options
def jobs_retry(ids: tuple[int, ...], all_jobs: bool, yes: bool, as_json: bool,
               **opts: Any) -> None:
    """Run jobs now: the given IDS, or every job matching the filters (asks
    first unless --yes). Expired jobs get one more attempt; finished and
    running jobs are left alone."""
    _bulk_command("retry", ids, all_jobs, yes, as_json, opts)


@jobs.command("expire", epilog=SHORT_EPILOG, short_help="Expire jobs, by id or filter.")
@_bulk_options
def jobs_expire(ids: tuple[int, ...], all_jobs: bool, yes: bool, as_json: bool,
                **opts: Any) -> None:
    """Expire jobs so they never run again: the given IDS, or every job
    matching the filters (asks first unless --yes). Running jobs are left alone."""
    _bulk_command("expire", ids, all_jobs, yes, as_json, opts)


@jobs.command("delete", epilog=SHORT_EPILOG, short_help="Delete jobs, by id or filter.")
@_bulk_options
def jobs_delete(ids: tuple[int, ...], all_jobs: bool, yes: bool, as_json: bool,
                **opts: Any) -> None:
    """Delete jobs: the given IDS, or every job matching the filters (asks
    first unless --yes). Running jobs are left alone."""
    _bulk_command("delete", ids, all_jobs, yes, as_json, opts)


# -- clear, drop ------------------------------------------------------------------


@main.command(epilog=SHORT_EPILOG, short_help="Delete every job of the given queues.")
@connection_options
@click.argument("queues", nargs=-1, required=True)
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@json_option
def clear(queues: tuple[str, ...], yes: bool, as_json: bool, **opts: Any) -> None:
    """Delete every job of QUEUES, whatever its state (asks first unless
    --yes). Jobs running now are left to their workers."""
    from que_core import admin

    cfg = Settings(opts)
    cfg.setup_logging()
    conn = cfg.connect()
    try:
        with _errors():
            where = admin.JobFilter(queues=list(queues))
            matched, running = admin.count_jobs(conn, where)
            if matched and not yes:
                note = f" ({running} running now: those are left to finish)" if running else ""
                click.confirm(
                    f"Delete all {matched} job{'s' if matched != 1 else ''} of queue "
                    f"{', '.join(queues)}{note}?", abort=True, err=True,
                )
            result = admin.clear_queues(conn, list(queues)) if matched else admin.BulkResult(
                "clear", 0, 0, 0)
    finally:
        conn.close()
    _bulk_report("clear", result, [], as_json)


@main.command(epilog=SHORT_EPILOG, short_help="Drop the que schema and every job.")
@connection_options
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@json_option
def drop(yes: bool, as_json: bool, **opts: Any) -> None:
    """Drop the que schema: the que_jobs, que_lockers and que_values tables,
    every job in them, and que's functions and triggers (asks first unless
    --yes). `que migrate` creates it again."""
    from que_core import admin
    from que_core.migrations import LATEST_VERSION, current_version

    cfg = Settings(opts)
    cfg.setup_logging()
    conn = cfg.connect(check_schema=False)
    try:
        with _errors():
            version = current_version(conn)
            if version == 0:
                if as_json:
                    _echo_json({"dropped": False, "from": 0})
                else:
                    click.echo("there is no que schema to drop")
                return
            if version > LATEST_VERSION:
                raise SchemaError(
                    f"the que schema is at version {version}, newer than this que-core knows "
                    f"({LATEST_VERSION}): drop it with the tool that created it"
                )
            if not yes:
                ((count,),) = conn.execute("SELECT count(*) FROM que_jobs")
                workers = len(admin.stats(conn).lockers) if version == LATEST_VERSION else 0
                note = f"; {workers} worker process(es) are connected to it" if workers else ""
                click.confirm(
                    f"Drop the que schema (version {version}) and its {count} job(s) from "
                    f"{mask_password(cfg.dsn())}{note}?", abort=True, err=True,
                )
            before = admin.drop_schema(conn)
    finally:
        conn.close()
    if as_json:
        _echo_json({"dropped": True, "from": before})
    else:
        click.echo(f"dropped the que schema (was version {before})")


# -- config ---------------------------------------------------------------------------


@main.command(epilog=SHORT_EPILOG, short_help="The effective settings and where each came from.")
@connection_options
@worker_options
@click.option("--module", "modules", multiple=True,
              help="A job module to import (repeatable) [$QUE_MODULES; [tool.que] modules].")
@json_option
def config(as_json: bool, **opts: Any) -> None:
    """Print the effective settings and where each came from: flag, env,
    pyproject (the [tool.que] table of the pyproject.toml in this directory or
    above) or default. Passwords are masked. Takes every setting's flag, to
    show what a command given the same flags would use."""
    from que_core import embedded

    cfg = Settings(opts)
    pyproject = settings_file.find_pyproject()
    out: dict[str, dict[str, Any]] = {}
    for name, v in cfg.values.items():
        value = v.value
        if name == "embedded_dir" and not value:
            value = str(embedded.default_data_dir())
        if name == "dsn" and isinstance(value, str):
            value = mask_password(value)
        out[name] = {"value": value, "source": v.source}
    if as_json:
        _echo_json({"settings": out, "pyproject": str(pyproject) if pyproject else None})
        return
    rows = []
    for name, item in out.items():
        value = item["value"]
        if isinstance(value, list):
            value = ",".join(value)
        rows.append([name, "-" if value is None else value, item["source"]])
    click.echo(_table(["SETTING", "VALUE", "SOURCE"], rows, set()))
    click.echo(f"pyproject.toml: {pyproject or 'none found'}")


# -- demo ---------------------------------------------------------------------------------


@main.command(epilog=SHORT_EPILOG,
              short_help="Enqueue demo jobs and work them, with live progress.")
@connection_options
@click.option("-n", "--jobs", "job_count", type=click.IntRange(min=1), default=3000,
              show_default=True, help="How many jobs to enqueue.")
@click.option("-w", "--workers", type=click.IntRange(min=1), default=8, show_default=True,
              help="Worker threads.")
@click.option("--timeout", type=click.FloatRange(min=1), default=120.0, show_default=True,
              help="Give up after this many seconds.")
def demo(job_count: int, workers: int, timeout: float, **opts: Any) -> None:
    """Enqueue a few thousand demo jobs (some fail and are retried, a few
    expire) and work them in this process, with live progress and a summary.

    Without a DSN (or with --embedded) it starts the embedded PostgreSQL;
    either way it works in a database of its own, dropped at the end.
    """
    from que_core import demo as demo_module
    from que_core import logs

    cfg = Settings(opts)
    # The demo draws its own progress; job errors are part of the show.
    level = "warning" if cfg.values["log_level"].source == "default" else cfg["log_level"]
    logs.setup(level, cfg["log_format"])
    if cfg["embedded"] or not cfg["dsn"]:
        os.environ["QUE_EMBEDDED_DIR"] = str(cfg.embedded_dir())
        dsn = None
    else:
        dsn = cfg.dsn()
    with cfg.errors():
        status = demo_module.run(dsn=dsn, adapter=cfg["adapter"], jobs=job_count,
                                 workers=workers, timeout=timeout)
    sys.exit(status)


if __name__ == "__main__":
    main(prog_name="que")
