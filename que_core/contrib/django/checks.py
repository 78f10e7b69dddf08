"""System checks (``manage.py check``) for the ``QUE`` setting."""

from __future__ import annotations

from typing import Any

from django.core import checks
from django.core.exceptions import ImproperlyConfigured


def check_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    from que_core.config import RunMode
    from que_core.contrib.django import conf, db
    from que_core.errors import ConfigurationError
    from que_core.plugins import get_adapter

    errors: list[checks.CheckMessage] = []
    try:
        unknown = conf.unknown_keys()
    except ImproperlyConfigured as exc:
        return [checks.Error(str(exc), id="que.E000")]
    if unknown:
        errors.append(
            checks.Warning(
                f"unknown key(s) in settings.QUE: {', '.join(unknown)}",
                hint=f"known keys: {', '.join(sorted(conf.DEFAULTS))}",
                id="que.W001",
            )
        )
    mode = conf.get("RUN_MODE")
    if mode is not None and mode not in {m.value for m in RunMode}:
        errors.append(
            checks.Error(
                f"QUE['RUN_MODE'] is {mode!r}",
                hint="use 'queue' or 'inline'",
                id="que.E003",
            )
        )
    from django.db import connections

    alias = db.database_alias()
    if alias not in connections.settings:
        errors.append(
            checks.Error(
                f"QUE['DATABASE'] is {alias!r}, which is not in settings.DATABASES",
                id="que.E001",
            )
        )
        return errors
    try:
        db.check_postgresql(connections[alias])
    except ImproperlyConfigured as exc:
        errors.append(checks.Error(str(exc), id="que.E002"))
        return errors
    try:
        get_adapter(db.worker_adapter())
    except ConfigurationError as exc:
        errors.append(
            checks.Warning(
                f"`manage.py que_work` cannot run: {exc}",
                hint="install the que-core adapter of your driver, or set QUE['ADAPTER']",
                id="que.W002",
            )
        )
    return errors
