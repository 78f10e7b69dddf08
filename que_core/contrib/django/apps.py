"""The Django app: ``INSTALLED_APPS = [..., "que_core.contrib.django"]``."""

from __future__ import annotations

import contextlib

from django.apps import AppConfig
from django.core import checks
from django.core.exceptions import ImproperlyConfigured


class QueConfig(AppConfig):
    name = "que_core.contrib.django"
    label = "que"
    verbose_name = "que-core"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from que_core.contrib.django import checks as que_checks

        checks.register(que_checks.check_settings, checks.Tags.database)
        install()
        register_builtin_jobs()


def register_builtin_jobs() -> None:
    """Register the integration's own jobs where their backends are
    configured: :class:`~que_core.contrib.django.mail.SendEmailJob` when
    email goes through que-core, and
    :class:`~que_core.contrib.django.tasks.TaskJob` (with the apps' tasks
    modules imported, so that their tasks are known) when a task backend is
    que-core's. Elsewhere a worker does not run rows naming them."""
    from que_core.contrib.django import mail
    from que_core.job import register_job

    if mail.configured():
        register_job(mail.SendEmailJob)
    try:
        from que_core.contrib.django import tasks
    except ImportError:  # no Tasks framework installed
        return
    if tasks.configured():
        register_job(tasks.TaskJob)
        tasks.import_task_modules()


def install() -> None:
    """Make Django's connection the one ``enqueue`` uses by default, apply
    ``QUE['RUN_MODE']`` and clean up stale connections in worker threads.
    ``ready()`` calls it; :func:`uninstall` undoes it."""
    from que_core.config import set_run_mode, settings
    from que_core.contrib.django import conf
    from que_core.contrib.django.db import provider
    from que_core.contrib.django.plugin import CLEANUP
    from que_core.plugins import plugin_manager

    settings.connection_provider = provider
    # A bad QUE or RUN_MODE is left to the system checks (que.E000, que.E003),
    # which say what is wrong; raising here would crash every manage.py command.
    with contextlib.suppress(ImproperlyConfigured, ValueError):
        if conf.get("RUN_MODE"):
            set_run_mode(conf.get("RUN_MODE"))
    pm = plugin_manager()
    if not pm.is_registered(CLEANUP):
        pm.register(CLEANUP, name="que-django-connection-cleanup")


def uninstall() -> None:
    from que_core.config import settings
    from que_core.contrib.django.db import provider
    from que_core.contrib.django.plugin import CLEANUP
    from que_core.plugins import plugin_manager

    if settings.connection_provider is provider:
        settings.connection_provider = None
    pm = plugin_manager()
    if pm.is_registered(CLEANUP):
        pm.unregister(CLEANUP)

