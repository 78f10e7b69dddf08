"""Jobs of the Django tests (`que_work` finds them: they are this app's jobs module)."""

from __future__ import annotations

import threading

from django.db import connection

from que_core import Job
from tests.django_app.models import Event


def record(name: str) -> Event:
    with connection.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        (pid,) = cur.fetchone()
    return Event.objects.create(name=name, backend_pid=pid, thread=threading.current_thread().name)


class OrmJob(Job):
    """Writes an Event through the ORM, on Django's connection in its thread."""

    def run(self, name: str) -> None:
        record(name)


class FailingOrmJob(Job):
    maximum_retry_count = 0

    def run(self, name: str) -> None:
        record(name)
        raise ValueError(f"failed {name}")
