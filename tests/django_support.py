"""Django for the Django tests: set up once per process, a fresh database per test.

``QUE_TEST_DJANGO_DRIVER=psycopg2`` makes Django use its psycopg2 backend
even when psycopg 3 is installed (test_django.py runs the Django tests once
more that way, in a subprocess).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from que_core.connection import Adapter, Connection
from que_core.dsn import parse_dsn

DRIVER_ENV = "QUE_TEST_DJANGO_DRIVER"


def setup() -> None:
    """Configure Django with tests.django_settings (once per process)."""
    pytest.importorskip("django")
    import django
    from django.conf import settings

    if settings.configured:
        return
    if os.environ.get(DRIVER_ENV) == "psycopg2":
        pytest.importorskip("psycopg2")
        from que_core.plugins import plugin_manager

        plugin_manager()  # the psycopg adapter imports psycopg 3 first...
        sys.modules["psycopg"] = None  # type: ignore[assignment]  # ...then Django can't
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.django_settings"
    django.setup()
    from que_core.contrib.django.apps import uninstall

    uninstall()  # the django_db fixture installs it for each test, and removes it after


@dataclass
class DjangoDatabase:
    dsn: str
    adapter: Adapter  # the adapter of the driver Django uses
    conn: Connection  # a session of our own (autocommit), to look from outside

    def connect(self) -> Connection:
        return self.adapter.connect(self.dsn)


def database_settings(dsn: str) -> dict[str, object]:
    """Django's DATABASES entry for *dsn* (the embedded server: its socket directory)."""
    params = parse_dsn(dsn)
    host = params.get("host", "")
    if "unix_sock" in params:  # the embedded server
        host = str(params["unix_sock"]).rsplit("/", 1)[0]
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": params.get("dbname", "postgres"),
        "USER": params.get("user", ""),
        "PASSWORD": params.get("password", ""),
        "HOST": host,
        "PORT": params.get("port", ""),
    }


def point_default_at(dsn: str) -> None:
    from django.db import connections

    connections.close_all()
    connections["default"].settings_dict.update(database_settings(dsn))


@pytest.fixture
def django_db(server_dsn: str) -> Iterator[DjangoDatabase]:
    """A fresh database made by ``manage.py migrate``, as Django's default."""
    setup()
    from django.core import mail
    from django.core.management import call_command
    from django.db import connections

    from que_core.config import RunMode, settings
    from que_core.contrib.django import db
    from que_core.contrib.django.apps import install, uninstall
    from que_core.plugins import get_adapter
    from que_core.testing import databases

    adapter = get_adapter(db.worker_adapter())
    with databases.temporary_database(adapter, server_dsn) as dsn:
        point_default_at(dsn)
        call_command("migrate", verbosity=0)
        install()
        mail.outbox = []
        conn = adapter.connect(dsn)
        try:
            yield DjangoDatabase(dsn, adapter, conn)
        finally:
            conn.close()
            uninstall()
            settings.run_mode = RunMode.QUEUE
            connections.close_all()
