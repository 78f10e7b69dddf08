"""Tasks of the Django tests: Django's @task on Django 6, the backport's on 5.2."""

from __future__ import annotations

from typing import Any

try:
    from django.tasks import task
except ImportError:
    from django_tasks import task

from tests.django_app.jobs import record


@task
def add(a: int, b: int) -> int:
    record(f"add {a} {b}")
    return a + b


@task(queue_name="other", priority=50)
def important(name: str) -> str:
    record(name)
    return name


@task
def fails(name: str) -> None:
    record(name)
    raise ValueError(f"task failed: {name}")


@task(takes_context=True)
def with_context(context: Any, name: str) -> dict[str, Any]:
    return {"attempt": context.attempt, "id": context.task_result.id, "name": name}


@task
async def async_add(a: int, b: int) -> int:
    return a + b


@task(backend="retrying")
def flaky(name: str) -> str:
    from tests.django_app.models import Event

    record(name)
    if Event.objects.filter(name=name).count() < 2:
        raise RuntimeError("first attempt fails")
    return "ok"
