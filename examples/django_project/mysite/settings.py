"""Settings of the example project: a shop whose orders are confirmed by jobs.

The database is $DATABASE_URL (a PostgreSQL URL or key=value DSN).
"""

import os

from que_core.dsn import parse_dsn

SECRET_KEY = "example-only-not-secret"
DEBUG = True
ALLOWED_HOSTS = ["*"]
USE_TZ = True
ROOT_URLCONF = "mysite.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "que_core.contrib.django",  # the que-core schema, que_work, enqueue on Django's connection
    "shop",
]

_db = parse_dsn(os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/shop"))
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": _db.get("dbname", "postgres"),
        "USER": _db.get("user", ""),
        "PASSWORD": _db.get("password", ""),
        "HOST": _db.get("host", ""),
        "PORT": _db.get("port", ""),
    }
}

# Email goes out through a job (a rolled-back order sends nothing); the job
# hands it to QUE["EMAIL_BACKEND"].
EMAIL_BACKEND = "que_core.contrib.django.mail.EmailBackend"
DEFAULT_FROM_EMAIL = "shop@example.com"

QUE = {
    "QUEUES": ["default"],
    "EMAIL_BACKEND": "django.core.mail.backends.console.EmailBackend",
}

# Django's Tasks framework (Django 6; on 5.2 `pip install django-tasks`).
TASKS = {"default": {"BACKEND": "que_core.contrib.django.tasks.QueTaskBackend"}}
