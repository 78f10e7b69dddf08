"""The Django Tasks backend: django.tasks on Django 6, the django-tasks backport on 5.2."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

pytest.importorskip("django")

from conformance.fixtures import wait_until
from tests import django_support
from tests.django_support import DjangoDatabase
from tests.helpers import job_count

django_support.setup()
django_db = django_support.django_db  # the fixture

try:
    import django.tasks as tasks_api  # Django 6
    from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist
except ImportError:
    tasks_api = pytest.importorskip("django_tasks")  # the backport, Django 5.2
    from django_tasks.exceptions import InvalidTaskError as InvalidTask
    from django_tasks.exceptions import TaskResultDoesNotExist

from django.db import transaction  # noqa: E402
from django.utils import timezone  # noqa: E402

from conformance.jobs import PlainJob  # noqa: E402
from que_core import Worker, run_mode  # noqa: E402
from que_core.contrib.django.tasks import QueTaskBackend, TaskJob  # noqa: E402
from que_core.testing import drain  # noqa: E402
from tests.django_app import tasks  # noqa: E402
from tests.django_app.models import Event  # noqa: E402

Status = tasks_api.TaskResultStatus


def test_the_backend_is_que_cores(django_db: DjangoDatabase) -> None:
    backend = tasks_api.task_backends["default"]
    assert isinstance(backend, QueTaskBackend)
    assert backend.supports_defer and backend.supports_priority and backend.supports_get_result
    assert backend.check() == []


def test_enqueue_joins_the_atomic_block(django_db: DjangoDatabase) -> None:
    with pytest.raises(RuntimeError), transaction.atomic():
        result = tasks.add.enqueue(1, 2)
        raise RuntimeError("roll back")
    with pytest.raises(TaskResultDoesNotExist):
        tasks.add.get_result(result.id)
    assert job_count(django_db.conn) == 0
    with transaction.atomic():
        result = tasks.add.enqueue(1, 2)
    assert result.status == Status.READY
    assert tasks.add.get_result(result.id).status == Status.READY


def test_worker_runs_tasks_and_results_are_readable(django_db: DjangoDatabase) -> None:
    result = tasks.add.enqueue(2, 3)
    assert result.enqueued_at is not None and result.started_at is None
    with pytest.raises(ValueError, match="not finished"):
        result.return_value  # noqa: B018
    worker = Worker(django_db.dsn, adapter=django_db.adapter, poll_interval=0.2).start()
    try:
        wait_until(lambda: tasks.add.get_result(result.id).is_finished)
    finally:
        worker.stop(timeout=10)
    result.refresh()
    assert result.status == Status.SUCCESSFUL
    assert result.return_value == 5
    assert result.attempts == 1 and len(result.worker_ids) == 1
    assert result.enqueued_at <= result.started_at <= result.finished_at
    assert result.last_attempted_at == result.started_at
    assert result.args == [2, 3] and result.kwargs == {}
    assert result.errors == []
    assert Event.objects.get().name == "add 2 3"


def test_a_failing_task_fails_with_its_error(django_db: DjangoDatabase) -> None:
    result = tasks.fails.enqueue("boom")
    drain(raise_errors=False)  # no retries: Django's tasks run once by default
    result.refresh()
    assert result.status == Status.FAILED
    assert result.finished_at is not None
    [error] = result.errors
    assert error.exception_class_path == "builtins.ValueError"
    assert error.exception_class is ValueError
    assert "task failed: boom" in error.traceback
    with pytest.raises(ValueError, match="failed"):
        result.return_value  # noqa: B018


def test_retries_when_the_backend_allows_them(django_db: DjangoDatabase) -> None:
    result = tasks.flaky.enqueue("flaky")
    drain(raise_errors=False)
    result.refresh()
    assert result.status == Status.READY  # waiting for its retry
    assert len(result.errors) == 1 and result.attempts == 1
    drain()
    result.refresh()
    assert result.status == Status.SUCCESSFUL and result.return_value == "ok"
    assert result.attempts == 2 and len(result.errors) == 1


def test_priority_queue_and_run_after_become_the_jobs(django_db: DjangoDatabase) -> None:
    later = timezone.now() + timedelta(hours=1)
    deferred = tasks.add.using(run_after=later).enqueue(1, 1)
    low = tasks.add.using(priority=-100).enqueue(2, 2)
    high = tasks.add.using(priority=100).enqueue(3, 3)
    other = tasks.important.enqueue("other queue")
    rows = {
        str(r[0]): r[1:]
        for r in django_db.conn.execute("SELECT id, priority, queue, run_at FROM que_jobs")
    }
    assert rows[low.id][:2] == (200, "default")
    assert rows[high.id][:2] == (0, "default")
    assert rows[other.id][:2] == (50, "other")
    assert abs((rows[deferred.id][2] - later).total_seconds()) < 0.001
    got = tasks.add.get_result(deferred.id)
    assert got.task.run_after == rows[deferred.id][2]
    assert (got.task.priority, got.task.queue_name) == (0, "default")
    assert tasks.important.get_result(other.id).task.priority == 50
    ran = drain(queues=["default"])  # priority order; the deferred one is not ready
    assert [j.args[2] for j in ran] == [[3, 3], [2, 2]]
    assert tasks.add.get_result(deferred.id).status == Status.READY


def test_invalid_tasks_are_refused_by_the_framework(django_db: DjangoDatabase) -> None:
    with pytest.raises(InvalidTask, match="Queue"):
        tasks.add.using(queue_name="nowhere").enqueue(1, 2)
    assert job_count(django_db.conn) == 0


def test_context_and_async_tasks(django_db: DjangoDatabase) -> None:
    ctx = tasks.with_context.enqueue("ctx")
    coro = tasks.async_add.enqueue(20, 22)
    drain()
    assert tasks.with_context.get_result(ctx.id).return_value == {
        "attempt": 1,
        "id": ctx.id,
        "name": "ctx",
    }
    assert tasks.async_add.get_result(coro.id).return_value == 42


def test_get_result_of_something_else(django_db: DjangoDatabase) -> None:
    job = PlainJob.enqueue("not a task")
    backend = tasks_api.task_backends["default"]
    for bad in (str(job.id), "123456", "not a number"):
        with pytest.raises(TaskResultDoesNotExist):
            backend.get_result(bad)
    flaky = tasks.flaky.enqueue("other backend")
    with pytest.raises(TaskResultDoesNotExist):
        backend.get_result(flaky.id)  # it is the "retrying" backend's


def test_signals_are_sent(django_db: DjangoDatabase) -> None:
    seen: list[tuple[str, Any]] = []
    def receiver_for(name: str) -> Any:
        def receive(sender: Any, task_result: Any, **kwargs: Any) -> None:
            seen.append((name, task_result.status))

        return receive

    receivers = {n: receiver_for(n) for n in ("task_enqueued", "task_started", "task_finished")}
    for name, receiver in receivers.items():
        getattr(tasks_api.signals, name).connect(receiver, weak=False)
    try:
        tasks.add.enqueue(1, 1)
        tasks.fails.enqueue("x")
        drain(raise_errors=False)
    finally:
        for name, receiver in receivers.items():
            getattr(tasks_api.signals, name).disconnect(receiver)
    assert seen == [
        ("task_enqueued", Status.READY),
        ("task_enqueued", Status.READY),
        ("task_started", Status.RUNNING),
        ("task_finished", Status.SUCCESSFUL),
        ("task_started", Status.RUNNING),
        ("task_finished", Status.FAILED),
    ]


def test_inline_mode_runs_the_task_at_enqueue(django_db: DjangoDatabase) -> None:
    with run_mode("inline"):
        result = tasks.add.enqueue(4, 5)
    assert result.status == Status.SUCCESSFUL and result.return_value == 9
    assert job_count(django_db.conn) == 0
    assert Event.objects.get().name == "add 4 5"


def test_the_worker_refuses_a_path_that_is_not_a_task(django_db: DjangoDatabase) -> None:
    job = TaskJob.enqueue("os.system", "default", ["echo hi"], {})
    with pytest.raises(LookupError, match="not a Task"):
        drain()
    row = django_db.conn.execute(
        "SELECT expired_at IS NOT NULL, last_error_message FROM que_jobs WHERE id = %s",
        (job.id,),
    )
    assert row[0][0] is True and "not a Task" in row[0][1]


def test_without_a_tasks_framework_the_import_error_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import importlib
    import sys

    for name in ("django.tasks", "django_tasks"):
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.delitem(sys.modules, "que_core.contrib.django.tasks")
    with pytest.raises(ImportError, match="pip install django-tasks"):
        importlib.import_module("que_core.contrib.django.tasks")


def test_configured_only_where_tasks_names_this_backend() -> None:
    from django.test import override_settings

    from que_core.contrib.django import tasks as que_tasks

    ours = {"BACKEND": "que_core.contrib.django.tasks.QueTaskBackend"}
    with override_settings(TASKS={"default": {"BACKEND": "no.such.Backend"}, "x": None}):
        assert not que_tasks.configured()
    with override_settings(TASKS={"other": {"BACKEND": "no.such.Backend"}, "default": ours}):
        assert que_tasks.configured()
