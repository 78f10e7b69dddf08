"""``manage.py que_work``: a que-core worker with Django set up.

Job classes are found by importing each installed app's ``jobs`` module (and
``QUE["JOB_MODULES"]``). Django tasks (each app's ``tasks`` module) and
queued emails are worked when their backends are que-core's, and only then.
The worker's own sessions use ``QUE["DSN"]`` (default: built from
``DATABASES[QUE["DATABASE"]]``); jobs that use the ORM get Django's
connections in their thread, closed when stale before and after each job.
SIGINT or SIGTERM lets running jobs finish, then exits; the exit statuses
are ``que work``'s (:mod:`que_core.foreground`).
"""

from __future__ import annotations

import importlib
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.module_loading import autodiscover_modules

from que_core import foreground
from que_core.contrib.django import conf, db
from que_core.dsn import mask_password
from que_core.errors import QueError


def import_job_modules() -> None:
    """Register every Job class the project defines, and the integration's
    own where their backends are configured (email, tasks)."""
    from que_core.contrib.django.apps import register_builtin_jobs

    register_builtin_jobs()
    autodiscover_modules("jobs")
    for name in conf.get("JOB_MODULES") or []:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise CommandError(
                f"cannot import job module {name!r} (QUE['JOB_MODULES']): {exc}"
            ) from None


class Command(BaseCommand):
    help = "Work que-core jobs until SIGINT/SIGTERM."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("-q", "--queue", dest="queues", action="append",
                            help="queue to work (repeatable; default QUE['QUEUES'])")
        parser.add_argument("-w", "--workers", type=int, default=None,
                            help="worker threads (default QUE['WORKER_COUNT'] or 6)")
        parser.add_argument("-i", "--poll-interval", type=float, default=None,
                            help="seconds between polls (default QUE['POLL_INTERVAL'])")
        parser.add_argument("--shutdown-timeout", type=float, default=None,
                            help="on SIGTERM/SIGINT, seconds to let running jobs finish")
        parser.add_argument("--no-listen", action="store_true",
                            help="poll only; do not LISTEN for new jobs")

    def handle(self, *args: Any, **options: Any) -> None:
        from que_core.schedules import from_table
        from que_core.worker import Worker

        import_job_modules()
        dsn = db.worker_dsn()
        timeout = options["shutdown_timeout"]
        if timeout is None:
            timeout = conf.get("SHUTDOWN_TIMEOUT")

        def start() -> Worker:
            worker = Worker(
                dsn,
                adapter=db.worker_adapter(),
                queues=options["queues"] or list(conf.get("QUEUES")),
                worker_count=options["workers"] or conf.get("WORKER_COUNT"),
                worker_priorities=conf.get("WORKER_PRIORITIES"),
                poll_interval=options["poll_interval"] or float(conf.get("POLL_INTERVAL")),
                batch_size=int(conf.get("BATCH_SIZE")),
                listen=bool(conf.get("LISTEN")) and not options["no_listen"],
                schedules=from_table(conf.get("SCHEDULES"), "settings.QUE['SCHEDULES']"),
            ).start()
            self.stdout.write(f"que-core worker started: queues {', '.join(worker.queues)}")
            self.stdout.flush()
            return worker

        try:  # exits with foreground.EXIT_UNFINISHED or EXIT_SECOND_SIGNAL if need be
            foreground.work_until_signalled(start, lambda w: bool(w.stop(timeout=timeout)))
        except QueError as exc:
            raise CommandError(mask_password(str(exc))) from None
        self.stdout.write("que-core worker stopped")
        self.stdout.flush()
