"""``manage.py que_work``: a que-core worker with Django set up.

Job classes are found by importing each installed app's ``jobs`` module (and
``QUE["JOB_MODULES"]``). Django tasks (each app's ``tasks`` module) and
queued emails are worked when their backends are que-core's, and only then.
The worker's own sessions use ``QUE["DSN"]`` (default: built from
``DATABASES[QUE["DATABASE"]]``); jobs that use the ORM get Django's
connections in their thread, closed when stale before and after each job.
SIGINT or SIGTERM lets running jobs finish, then exits; the exit statuses
are ``que work``'s (:mod:`que_core.foreground`). ``--processes N`` (or
``QUE["PROCESSES"]``) runs N such workers under a supervisor
(:mod:`que_core.supervisor`), each started as this command was.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.module_loading import autodiscover_modules

from que_core import foreground, options
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
        # que work's worker flags (que_core.options), QUE's keys as their defaults
        for spec in options.WORKER_SPECS:
            if spec.django_key is None:
                continue
            flags = [f for f in (spec.short, spec.flag.split("/")[0]) if f]
            where = f"default QUE['{spec.django_key}']" + (
                f", else {spec.default!r}" if spec.default is not None else "")
            if spec.convert is options.SPECS_BY_NAME["listen"].convert:
                parser.add_argument(*flags, dest=spec.name, default=None,
                                    action=argparse.BooleanOptionalAction,
                                    help=f"{spec.help} ({where})")
            else:
                parser.add_argument(*flags, dest=spec.name, default=None,
                                    action="append" if spec.multiple else "store",
                                    type=None if spec.multiple else spec.convert,
                                    metavar=spec.name.upper(),
                                    help=f"{spec.help} ({where})")
        parser.add_argument("--supervised", action="store_true", help=argparse.SUPPRESS)

    def handle(self, *args: Any, **flags: Any) -> None:
        from que_core import supervisor
        from que_core.worker import Worker

        if flags["supervised"]:
            supervisor.child_payload()
        import_job_modules()
        dsn = db.worker_dsn()
        values = {}
        for spec in options.WORKER_SPECS:
            if spec.django_key is not None:
                given = flags.get(spec.name)
                values[spec.name] = given if given is not None else conf.get(spec.django_key)
        processes = values.pop("processes")
        if not isinstance(processes, int) or isinstance(processes, bool) or processes < 1:
            raise CommandError(f"--processes / QUE['PROCESSES'] {processes!r}: give a whole "
                               "number, 1 or more")
        if processes > 1 and not flags["supervised"]:
            sys.exit(self._supervise(dsn, processes, values["shutdown_timeout"]))

        def start() -> Worker:
            kwargs = options.worker_kwargs(values)
            worker = Worker(dsn, adapter=db.worker_adapter(), **kwargs).start()
            self.stdout.write(f"que-core worker started: queues {', '.join(worker.queues)}")
            self.stdout.flush()
            return worker

        timeout = values["shutdown_timeout"]
        try:  # exits with foreground.EXIT_UNFINISHED or EXIT_SECOND_SIGNAL if need be
            foreground.work_until_signalled(start, lambda w: bool(w.stop(timeout=timeout)))
        except QueError as exc:
            raise CommandError(mask_password(str(exc))) from None
        self.stdout.write("que-core worker stopped")
        self.stdout.flush()

    def _supervise(self, dsn: str, processes: int, timeout: float | None) -> int:
        from que_core import admin, supervisor
        from que_core.plugins import get_adapter

        try:  # no database, no schema: say so once, not in N crash loops
            conn = get_adapter(db.worker_adapter()).connect(dsn)
            try:
                admin.check_schema(conn)
            finally:
                conn.close()
        except QueError as exc:
            raise CommandError(mask_password(str(exc))) from None
        command = [*supervisor.this_command(), "--supervised"]
        return supervisor.supervise(command, processes, shutdown_timeout=timeout)
