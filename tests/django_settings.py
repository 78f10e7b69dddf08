"""Django settings of the Django tests (tests/test_django*.py).

The database NAME is switched to a fresh database per test by the
``django_db`` fixture (tests/django_support.py); a subprocess (``que_work``)
gets its database as $QUE_DJANGO_DATABASE_URL.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from tests.django_support import database_settings

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "django_project"
if str(EXAMPLE) not in sys.path:
    sys.path.append(str(EXAMPLE))  # the example's "shop" app and "mysite" urls


def _server() -> str:
    dsn = os.environ.get("QUE_DJANGO_DATABASE_URL")
    if dsn:
        return dsn
    from que_core.testing import databases

    return databases.server_dsn()


SECRET_KEY = "tests"
USE_TZ = True
DEBUG = False
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "mysite.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
INSTALLED_APPS = ["que_core.contrib.django", "tests.django_app", "shop"]
DATABASES = {
    "default": database_settings(_server()),
    "sqlite": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"},
}
EMAIL_BACKEND = "que_core.contrib.django.mail.EmailBackend"
DEFAULT_FROM_EMAIL = "tests@example.com"
QUE = {
    "EMAIL_BACKEND": "django.core.mail.backends.locmem.EmailBackend",
    "POLL_INTERVAL": 0.2,
}
TASKS = {
    "default": {
        "BACKEND": "que_core.contrib.django.tasks.QueTaskBackend",
        "QUEUES": ["default", "other"],
    },
    "retrying": {
        "BACKEND": "que_core.contrib.django.tasks.QueTaskBackend",
        "QUEUES": [],
        "OPTIONS": {"MAX_RETRIES": 1, "RETRY_INTERVAL": 0},
    },
}
LOGGING_CONFIG = None
