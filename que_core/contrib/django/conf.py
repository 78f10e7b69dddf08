"""The ``QUE`` setting: one dict in settings.py, every key optional.

::

    QUE = {
        "DATABASE": "default",        # the alias jobs are enqueued on and read from
        "DSN": None,                  # the worker's DSN; default: built from that alias
        "ADAPTER": None,              # the worker's adapter; default: Django's driver's
        # the worker's options, with que work's defaults (que_core.options):
        "QUEUES": ["default"],        # queues `manage.py que_work` works
        "WORKER_COUNT": 6,            # worker threads (of each process)
        "PROCESSES": 1,               # worker processes (2 or more: under a supervisor)
        "WORKER_PRIORITIES": None,    # e.g. [10, 30, None] (or "10,30,any")
        "POLL_INTERVAL": 5.0,
        "BATCH_SIZE": 20,
        "LISTEN": True,
        "SHUTDOWN_TIMEOUT": None,     # seconds to let jobs finish on SIGTERM
        "MAX_RUN_TIME": None,         # seconds a job may run (Job.max_run_time wins)
        "RETAIN_FINISHED": "7d",      # finished jobs kept this long ("never": for ever)
        "RETAIN_EXPIRED": "30d",      # expired and cancelled jobs kept this long
        "JOB_MODULES": [],            # imported by que_work besides each app's jobs.py
        "SCHEDULES": {},              # periodic jobs: {"name": {"job": ..., "cron": ...}}
        "RUN_MODE": None,             # "inline" runs jobs at enqueue (tests)
        "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "EMAIL_QUEUE": "default",
        "EMAIL_PRIORITY": 100,
    }
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from que_core import options

DEFAULTS: dict[str, Any] = {
    "DATABASE": "default",
    "DSN": None,
    "ADAPTER": None,
    **{s.django_key: s.default for s in options.WORKER_SPECS if s.django_key},
    "JOB_MODULES": [],
    "SCHEDULES": {},
    "RUN_MODE": None,
    "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
    "EMAIL_QUEUE": "default",
    "EMAIL_PRIORITY": 100,
}


def user_settings() -> dict[str, Any]:
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured

    value = getattr(settings, "QUE", None) or {}
    if not isinstance(value, dict):
        raise ImproperlyConfigured(f"settings.QUE must be a dict, not {type(value).__name__}")
    return value


def get(name: str) -> Any:
    """The value of ``QUE[name]``, or its default."""
    return user_settings().get(name, DEFAULTS[name])


def unknown_keys() -> list[str]:
    return sorted(set(user_settings()) - set(DEFAULTS))


def names_subclass(paths: Iterable[Any], base: type) -> bool:
    """Whether one of *paths* (setting values: dotted paths, or anything
    else) imports as a subclass of *base*; a path that does not import is
    skipped."""
    from django.utils.module_loading import import_string

    for path in paths:
        try:
            backend = import_string(path) if isinstance(path, str) else None
        except ImportError:
            continue
        if isinstance(backend, type) and issubclass(backend, base):
            return True
    return False
