"""``que stats``, ``que clear`` and ``que queues``: what the queues hold,
emptying them, pausing and resuming them."""

from __future__ import annotations

import signal
import sys
import threading
from datetime import datetime, timezone
from typing import Any

import click

from que_core.cli.group import CONTEXT, SHORT_EPILOG, main
from que_core.cli.output import bulk_report, echo_json, render_stats, table
from que_core.cli.settings import Settings, connection_options, json_option


@main.command(epilog=SHORT_EPILOG, short_help="Jobs per queue, class and state; worker processes.")
@connection_options
@click.option("--watch", is_flag=True, help="Refresh until Ctrl-C.")
@click.option("--interval", type=click.FloatRange(min=0.1), default=2.0, show_default=True,
              help="Seconds between refreshes with --watch.")
@json_option
def stats(watch: bool, interval: float, as_json: bool, **opts: Any) -> None:
    """Per queue and job class: jobs ready, scheduled, running (locked by a
    worker now), errored, expired, cancelled and finished, and the age of the oldest
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



@main.group(context_settings=CONTEXT, epilog=SHORT_EPILOG,
            short_help="Pause, resume and list queues.")
def queues() -> None:
    """Pause, resume and list queues.

    A paused queue gives no que-core worker, on any host, a new job until it
    is resumed; running jobs go on, other queues too. The state is in the
    database (que_core_paused_queues): it survives restarts and covers
    workers started later, and workers see it within about a second. Ruby
    Que's workers do not know about pausing: they go on working the queue.
    """


@queues.command("pause", epilog=SHORT_EPILOG, short_help="Stop workers taking a queue's jobs.")
@connection_options
@click.argument("name")
@click.option("--reason", default=None, help="Why (shown by que queues list).")
@json_option
def queues_pause(name: str, reason: str | None, as_json: bool, **opts: Any) -> None:
    """Pause queue NAME: no que-core worker starts a new job of it until
    `que queues resume NAME`. Running jobs go on."""
    from que_core import control

    cfg = Settings(opts)
    with cfg.session() as conn:
        done = control.pause(name, conn=conn, reason=reason)
        since = control.paused_since(name, conn=conn)
    if as_json:
        echo_json({"queue": name, "paused": True, "changed": done,
                   "paused_at": since[0] if since else None})
    elif done:
        click.echo(f"paused queue {name}: que-core workers start none of its jobs until "
                   f"`que queues resume {name}` (running ones go on)")
    else:
        click.echo(f"queue {name} is paused already (since {since[0] if since else '?'}): "
                   "nothing to do")


@queues.command("resume", epilog=SHORT_EPILOG, short_help="Let workers take a queue's jobs again.")
@connection_options
@click.argument("name")
@json_option
def queues_resume(name: str, as_json: bool, **opts: Any) -> None:
    """Resume queue NAME: every que-core worker that works it is told at once
    (NOTIFY; each also looks every second) and takes its jobs again."""
    from que_core import control

    cfg = Settings(opts)
    with cfg.session() as conn:
        done = control.resume(name, conn=conn)
    if as_json:
        echo_json({"queue": name, "paused": False, "changed": done})
    elif done:
        click.echo(f"resumed queue {name}")
    else:
        click.echo(f"queue {name} is not paused: nothing to do")


@queues.command("list", epilog=SHORT_EPILOG, short_help="Each queue: paused or not, its jobs.")
@connection_options
@json_option
def queues_list(as_json: bool, **opts: Any) -> None:
    """Each queue that has jobs or is paused: its state (active, or paused
    since when and why) and its jobs by state."""
    from que_core import control

    cfg = Settings(opts)
    with cfg.session() as conn:
        found = control.list_queues(conn=conn)
    if as_json:
        echo_json([s.to_dict() for s in found])
        return
    if not found:
        click.echo("no queues (no jobs, none paused)")
        return
    counts = ("ready", "scheduled", "running", "errored", "expired", "cancelled", "finished")
    rows = [[s.queue, "paused" if s.paused else "active", s.paused_at, s.reason,
             *(getattr(s, c) for c in counts)] for s in found]
    click.echo(table(["QUEUE", "STATE", "PAUSED AT", "REASON", *(c.upper() for c in counts)],
                     rows, set(range(4, 4 + len(counts)))))
