"""examples/django_project: a request enqueues a job; a worker works it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("django")

from conformance.fixtures import wait_until
from tests import django_support
from tests.django_support import DjangoDatabase
from tests.helpers import job_count

django_support.setup()
django_db = django_support.django_db  # the fixture

from django.core import mail  # noqa: E402
from django.test import Client  # noqa: E402
from shop.models import Order  # noqa: E402

from que_core import Worker  # noqa: E402

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "django_project"


def test_an_order_is_confirmed_by_a_job(django_db: DjangoDatabase) -> None:
    client = Client()
    response = client.post("/orders/", {"email": "buyer@example.com"})
    assert response.status_code == 201
    order_id = response.json()["id"]
    assert client.get(f"/orders/{order_id}/").json()["confirmed"] is False
    worker = Worker(django_db.dsn, adapter=django_db.adapter, poll_interval=0.2).start()
    try:
        wait_until(lambda: Order.objects.get(pk=order_id).confirmed and len(mail.outbox) == 1)
        wait_until(lambda: job_count(django_db.conn) == 0)  # the email job too
    finally:
        worker.stop(timeout=10)
    assert client.get(f"/orders/{order_id}/").json()["confirmed"] is True
    [sent] = mail.outbox
    assert sent.subject == f"Order {order_id} confirmed" and sent.to == ["buyer@example.com"]


def test_a_failed_request_enqueues_nothing(django_db: DjangoDatabase) -> None:
    client = Client(raise_request_exception=False)
    response = client.post("/orders/", {})  # no email: the view raises inside atomic()
    assert response.status_code in (400, 500)
    assert Order.objects.count() == 0 and job_count(django_db.conn) == 0


def test_the_example_projects_own_settings_pass_the_checks(django_db: DjangoDatabase) -> None:
    env = dict(os.environ, DATABASE_URL=django_db.dsn)
    env.pop("DJANGO_SETTINGS_MODULE", None)
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--database", "default"],
        cwd=EXAMPLE,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout
