"""``que work``: import the job modules, then work jobs until SIGINT/SIGTERM."""

from __future__ import annotations

import logging
import sys
import traceback
from pathlib import Path
from typing import Any

import click

from que_core import foreground, options
from que_core.cli.group import EXIT_USAGE, SHORT_EPILOG, QueCliError, main
from que_core.cli.settings import Settings, connection_options, worker_options

log = logging.getLogger("que_core.cli")


#: How ``que work --processes N`` starts each of its N worker processes.
SUPERVISED_WORK = ("-m", "que_core.cli", "work", "--supervised")


@main.command(epilog=SHORT_EPILOG, short_help="Work jobs until SIGINT/SIGTERM.")
@connection_options
@worker_options
@click.option("--supervised", is_flag=True, hidden=True,
              help="A worker process of `que work --processes N`: settings from stdin.")
@click.argument("modules", nargs=-1)
def work(modules: tuple[str, ...], supervised: bool, **opts: Any) -> None:
    """Work jobs until SIGINT/SIGTERM. MODULES are imported first: the
    modules that define your Job classes ($QUE_MODULES, [tool.que] modules),
    from the installed modules, else from the current directory (which is
    not put on sys.path: nothing else is imported from it).

    A first SIGINT/SIGTERM stops taking jobs and lets running ones finish
    (for --shutdown-timeout seconds at most), then exits with status 0, or 5
    when the deadline passed with jobs unfinished (they will be worked again);
    a second one exits at once, with status 6.

    With --processes N (2 or more) a supervisor starts N worker processes,
    each with --workers threads, restarts one that dies, passes SIGINT/SIGTERM
    on (same exit statuses) and serves --metrics-port for all of them.
    """
    from que_core import supervisor
    from que_core.job_modules import import_job_module
    from que_core.worker import Worker

    child: dict[str, Any] = {}
    if supervised:  # the supervisor resolved the settings once for all its children
        child = supervisor.child_payload()
        cfg = Settings(child["settings"], environ={}, pyproject=False)
    else:
        cfg = Settings({**opts, "modules": modules})
    several = cfg["processes"] > 1
    cfg.setup_logging(pid=supervised or several)
    dsn = cfg.dsn()
    for name in cfg["modules"]:
        try:
            import_job_module(name, Path.cwd())
        except ImportError as exc:
            raise QueCliError(f"cannot import job module {name!r}: {exc}", EXIT_USAGE) from None
        except Exception as exc:  # the module itself raised: a bug or a setting of the app
            raise QueCliError(f"cannot import job module {name!r}: {_raised(exc)}",
                              EXIT_USAGE) from None
    if several:
        cfg.connect().close()  # no database, no schema: say so once, not in N crash loops
        adapter = cfg.adapter()
        settings = {n: v.value for n, v in cfg.values.items()}
        # each child: one process, its metrics to the supervisor's endpoint
        settings.update(dsn=dsn, embedded=False, processes=1, metrics_port=None)
        with cfg.errors():
            sys.exit(supervisor.supervise(
                [sys.executable, *SUPERVISED_WORK], cfg["processes"],
                payload={"settings": settings}, shutdown_timeout=cfg["shutdown_timeout"],
                metrics_port=cfg["metrics_port"], metrics_host=cfg["metrics_host"],
                connect=lambda: adapter.connect(dsn), queues=cfg["queues"]))
    supervisor.record_metrics(child)

    def start() -> Any:
        kwargs = options.worker_kwargs({s.name: cfg[s.name] for s in options.WORKER_SPECS})
        # By name: an async-only adapter (asyncpg) runs the async def jobs,
        # the installed sync one the rest (see Worker).
        return Worker(dsn, adapter=cfg["adapter"], **kwargs).start()

    with cfg.errors():
        foreground.work_until_signalled(
            start, lambda w: bool(w.stop(timeout=cfg["shutdown_timeout"])),
            cfg["metrics_port"], cfg["metrics_host"],
        )


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
