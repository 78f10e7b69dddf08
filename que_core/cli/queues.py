"""``que stats`` and ``que clear``: what the queues hold, and emptying them."""

from __future__ import annotations

import signal
import sys
import threading
from datetime import datetime, timezone
from typing import Any

import click

from que_core.cli.group import SHORT_EPILOG, main
from que_core.cli.output import bulk_report, echo_json, render_stats
from que_core.cli.settings import Settings, connection_options, json_option


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
    tty = sys.stdout.isatty()
    # Ctrl-C ends the watch between refreshes: as an exception it could land
    # inside the driver mid-query (pg8000 then hung on its reply).
    interrupted = threading.Event()
    if watch:
        signal.signal(signal.SIGINT, lambda *_: interrupted.set())
    with cfg.session() as conn:
        try:
            while not interrupted.is_set():
                s = admin.stats(conn)
                now = datetime.now(timezone.utc).isoformat(timespec="seconds")
                if as_json:
                    echo_json({"time": now, **s.to_dict()})
                else:
                    if watch and tty:
                        click.clear()
                    if watch:
                        click.echo(f"{now} (every {interval:g}s, Ctrl-C to stop)")
                    click.echo(render_stats(s))
                    if watch and not tty:
                        click.echo()
                if not watch:
                    break
                sys.stdout.flush()
                interrupted.wait(interval)
        except KeyboardInterrupt:
            pass


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
    with cfg.session() as conn:
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
    bulk_report("clear", result, [], as_json)

