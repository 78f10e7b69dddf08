"""``que demo``: enqueue demo jobs and work them (:mod:`que_core.demo`)."""

from __future__ import annotations

import sys
from typing import Any

import click

from que_core.cli.group import SHORT_EPILOG, main
from que_core.cli.settings import Settings, connection_options


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
    embedded = cfg["embedded"] or not cfg["dsn"]
    dsn = None if embedded else cfg.dsn()
    with cfg.errors():
        status = demo_module.run(dsn=dsn, adapter=cfg["adapter"], jobs=job_count,
                                 workers=workers, timeout=timeout,
                                 data_dir=cfg.embedded_dir() if embedded else None)
    sys.exit(status)

