"""The ``que`` command."""

from __future__ import annotations

import importlib
import logging
import os
import signal
import sys
import threading
from types import FrameType

import click

from que_core.dsn import mask_password
from que_core.errors import QueError

log = logging.getLogger("que_core.cli")


def _dsn_option(f):  # type: ignore[no-untyped-def]
    return click.option(
        "--dsn",
        envvar="DATABASE_URL",
        show_envvar=True,
        help="PostgreSQL connection string.",
    )(f)


def _adapter_option(f):  # type: ignore[no-untyped-def]
    return click.option(
        "--adapter",
        envvar="QUE_ADAPTER",
        show_envvar=True,
        default=None,
        help="Adapter name (psycopg, psycopg2, pg8000, ...). Default: the installed one.",
    )(f)


def _require_dsn(dsn: str | None) -> str:
    if not dsn:
        raise click.UsageError("no database given: pass --dsn or set DATABASE_URL")
    return dsn


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="que-core")
def main() -> None:
    """que-core: a PostgreSQL job queue."""


@main.command()
@_dsn_option
@_adapter_option
@click.option("--to", "target", type=int, default=None, help="Migrate up or down to this version.")
@click.option("--status", is_flag=True, help="Print the current schema version and exit.")
def migrate(dsn: str | None, adapter: str | None, target: int | None, status: bool) -> None:
    """Bring the database to the latest que schema (or --to a version)."""
    from que_core.migrations import LATEST_VERSION, current_version
    from que_core.migrations import migrate as do_migrate
    from que_core.plugins import get_adapter

    dsn = _require_dsn(dsn)
    try:
        conn = get_adapter(adapter).connect(dsn)
        try:
            if status:
                click.echo(f"schema version {current_version(conn)} (latest {LATEST_VERSION})")
                return
            before = current_version(conn)
            after = do_migrate(conn, target)
        finally:
            conn.close()
    except QueError as exc:
        raise click.ClickException(mask_password(str(exc))) from None
    if before == after:
        click.echo(f"schema already at version {after}")
    else:
        click.echo(f"migrated schema from version {before} to {after}")


@main.command()
@_dsn_option
@_adapter_option
@click.option("-q", "--queue", "queues", multiple=True, help="Queue to work (repeatable).")
@click.option("-w", "--workers", type=click.IntRange(min=1), default=None,
              help="Number of worker threads (default 6).")
@click.option("-p", "--priorities", default=None,
              help="Per-thread priority thresholds, e.g. 10,30,50,any,any,any.")
@click.option("-i", "--poll-interval", type=click.FloatRange(min=0.001), default=5.0,
              show_default=True, help="Seconds between polls.")
@click.option("--buffer-size", type=click.IntRange(min=1), default=8, show_default=True,
              help="Locked jobs kept ready for free threads.")
@click.option("--shutdown-timeout", type=click.FloatRange(min=0), default=None,
              help="On SIGTERM/SIGINT, seconds to let running jobs finish (default: wait).")
@click.option("--no-listen", is_flag=True, help="Poll only; do not LISTEN for new jobs.")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False))
@click.argument("modules", nargs=-1)
def work(
    dsn: str | None,
    adapter: str | None,
    queues: tuple[str, ...],
    workers: int | None,
    priorities: str | None,
    poll_interval: float,
    buffer_size: int,
    shutdown_timeout: float | None,
    no_listen: bool,
    log_level: str,
    modules: tuple[str, ...],
) -> None:
    """Work jobs until SIGINT/SIGTERM. MODULES are imported first: the
    modules that define your Job classes."""
    from que_core.worker import Worker, parse_priorities

    _setup_logging(log_level)
    dsn = _require_dsn(dsn)
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise click.ClickException(f"cannot import job module {name!r}: {exc}") from None
    try:
        worker = Worker(
            dsn,
            adapter=adapter,
            queues=list(queues) or ["default"],
            worker_count=workers,
            worker_priorities=parse_priorities(priorities) if priorities else None,
            poll_interval=poll_interval,
            buffer_size=buffer_size,
            listen=not no_listen,
        )
        worker.start()
    except QueError as exc:
        raise click.ClickException(mask_password(str(exc))) from None

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():  # second signal: leave now; the session's end frees the locks
            os._exit(1)
        log.info("received %s: finishing running jobs", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    while not stop.wait(0.5):
        if not worker.running:
            raise click.ClickException("the worker's locker stopped unexpectedly")
    clean = worker.stop(timeout=shutdown_timeout)
    if not clean:
        log.warning("exiting with jobs unfinished: they will be worked again")
        os._exit(0)  # leaves the hung threads behind; the session close frees their locks


if __name__ == "__main__":
    main()
