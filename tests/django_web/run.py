"""A Django project with the admin and que web's URLs, driven by Django's test
client; prints what it saw as JSON (tests/test_django_web.py runs it in a
process of its own, with $QUE_DJANGO_WEB_DSN, so that its settings do not
meet the other Django tests')."""

from __future__ import annotations

import json
import os
import re
import sys

import django
from django.conf import settings

from tests.django_support import database_settings

settings.configure(
    SECRET_KEY="tests", DEBUG=False, ALLOWED_HOSTS=["*"], USE_TZ=True,
    ROOT_URLCONF=__name__, DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
    INSTALLED_APPS=["django.contrib.admin", "django.contrib.auth",
                    "django.contrib.contenttypes", "django.contrib.sessions",
                    "django.contrib.messages", "que_core.contrib.django"],
    MIDDLEWARE=["django.contrib.sessions.middleware.SessionMiddleware",
                "django.middleware.csrf.CsrfViewMiddleware",
                "django.contrib.auth.middleware.AuthenticationMiddleware",
                "django.contrib.messages.middleware.MessageMiddleware"],
    TEMPLATES=[{"BACKEND": "django.template.backends.django.DjangoTemplates",
                "APP_DIRS": True,
                "OPTIONS": {"context_processors": [
                    "django.template.context_processors.request",
                    "django.contrib.auth.context_processors.auth",
                    "django.contrib.messages.context_processors.messages"]}}],
    DATABASES={"default": database_settings(os.environ["QUE_DJANGO_WEB_DSN"])},
    LOGGING_CONFIG=None,
)
django.setup()

from django.contrib import admin  # noqa: E402
from django.contrib.auth.models import User  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.urls import include, path  # noqa: E402

from que_core.contrib.django.web import dashboard_urls  # noqa: E402

urlpatterns = [path("admin/que/", include(dashboard_urls())), path("admin/", admin.site.urls)]


def main() -> int:
    call_command("migrate", verbosity=0)
    with connection.cursor() as cur:
        cur.execute("INSERT INTO que_jobs (queue, job_class, run_at, error_count, "
                    "  last_error_message, job_schema_version) "
                    "VALUES ('django-queue', 'Job', now() + interval '1 hour', 1, 'x', 2) "
                    "RETURNING id")
        (job_id,) = cur.fetchone()
    User.objects.create_user("staff", password="pw", is_staff=True)
    User.objects.create_user("plain", password="pw")
    seen: dict[str, object] = {}
    anonymous = Client()
    page = anonymous.get("/admin/que/")
    seen["anonymous"] = [page.status_code, page.get("Location", "")]
    plain = Client()
    plain.login(username="plain", password="pw")
    seen["plain"] = plain.get("/admin/que/").status_code
    staff = Client(enforce_csrf_checks=True)
    staff.login(username="staff", password="pw")
    overview = staff.get("/admin/que/")
    text = overview.content.decode()
    seen["staff"] = [overview.status_code, "django-queue" in text,
                     'href="/admin/que/static/que.css"' in text]
    seen["static"] = staff.get("/admin/que/static/que.js").status_code
    job_page = staff.get(f"/admin/que/jobs/{job_id}").content.decode()
    token = re.search(r'name="csrf_token" value="([^"]+)"', job_page)
    forged = staff.post(f"/admin/que/jobs/{job_id}/retry", {"csrf_token": "x" * 43})
    seen["forged"] = forged.status_code
    done = staff.post(f"/admin/que/jobs/{job_id}/retry",
                      {"csrf_token": token.group(1) if token else ""})
    seen["retry"] = [done.status_code, done.get("Location", "")]
    with connection.cursor() as cur:
        cur.execute("SELECT run_at <= now() FROM que_jobs WHERE id = %s", (job_id,))
        seen["ran_now"] = cur.fetchone()[0]
    json.dump(seen, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
