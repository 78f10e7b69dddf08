"""``que schedules``: the periodic jobs, their last and next ticks."""

from __future__ import annotations

from typing import Any

import click

from que_core.cli.group import CONTEXT, SHORT_EPILOG, main
from que_core.cli.output import echo_json, table
from que_core.cli.settings import Settings, connection_options, json_option
from que_core.cli.work import import_modules


@main.group(context_settings=CONTEXT, epilog=SHORT_EPILOG,
            short_help="Periodic jobs: their last and next ticks.")
def schedules() -> None:
    """Periodic jobs: the job classes' schedules and [tool.que.schedules]."""


@schedules.command("list", epilog=SHORT_EPILOG,
                   short_help="Each schedule, its last tick and job, its next tick.")
@connection_options
@click.argument("modules", nargs=-1)
@json_option
def schedules_list(modules: tuple[str, ...], as_json: bool, **opts: Any) -> None:
    """Each schedule that a worker importing MODULES ($QUE_MODULES, [tool.que]
    modules) would enqueue, with [tool.que.schedules]: its cron expression,
    the last tick enqueued and that tick's job (with its state now: gone once
    the job was worked and deleted), and the next tick. Times are UTC."""
    from que_core.schedules import declared, status
    from que_core.settings_file import read_schedules

    cfg = Settings({**opts, "modules": modules})
    import_modules(cfg["modules"])
    with cfg.errors():
        plan = declared(read_schedules())
    with cfg.session() as conn:
        rows = status(conn, plan)
    if as_json:
        echo_json(rows)
        return
    if not rows:
        click.echo("no schedules (a job class's schedule = \"...\", or [tool.que.schedules])")
        return
    click.echo(table(
        ["SCHEDULE", "CRON", "JOB CLASS", "LAST TICK", "LAST JOB", "NEXT TICK"],
        [[r["name"], r["cron"], r["job_class"], r["last_tick"] or "-",
          f"{r['last_job_id']} ({r['last_job_state']})" if r["last_job_id"] else "-",
          r["next_tick"]] for r in rows], set()))
