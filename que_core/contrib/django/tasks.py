"""A backend for Django's Tasks framework that enqueues into que-core.

``django.tasks`` on Django 6, the ``django-tasks`` backport on Django 5.2::

    TASKS = {
        "default": {
            "BACKEND": "que_core.contrib.django.tasks.QueTaskBackend",
            "QUEUES": ["default", "emails"],    # optional; [] allows any queue
            "OPTIONS": {
                "DATABASE": "default",           # default QUE["DATABASE"]
                "MAX_RETRIES": 0,                # Django's tasks run once by default
                "RETRY_INTERVAL": None,          # seconds; default que-core's backoff
            },
        }
    }

``my_task.enqueue(...)`` inserts a job in the current transaction of that
database (a rolled-back ``atomic`` block leaves no task). ``manage.py
que_work`` runs it. Priority (-100..100, higher first) becomes que-core's
``100 - priority`` (0..200, lower first; Django's default 0 is que-core's
default 100), ``queue_name`` the queue, ``run_after`` the job's ``run_at``.
Task results stay in ``que_jobs`` (finished or expired rows, with the
return value or errors in ``data``) for ``get_result`` and ``refresh``;
delete old ones when you no longer need them.

A row names its task by module path, which is looked up among the tasks
this process knows, never imported: every ``@task`` on a que-core backend
registers itself when defined, and the apps' ``tasks`` modules are imported
at start-up (:func:`import_task_modules`). A row naming anything else fails
with an error, and ``get_result`` raises ``TaskResultDoesNotExist``.
"""

from __future__ import annotations

import contextvars
import importlib
import json
import os
import socket
import threading
from datetime import datetime
from types import SimpleNamespace
from typing import Any

from que_core.config import RunMode, settings
from que_core.connection import Connection
from que_core.contrib.django import conf, db
from que_core.job import Job
from que_core.sql import q


def _load_api() -> Any:
    """The Tasks framework: Django's own (6.0+) or the django-tasks backport."""
    errors = []
    candidates = (("django.tasks", "django.utils.json"), ("django_tasks", "django_tasks.utils"))
    for package, utils in candidates:
        try:
            base = importlib.import_module(f"{package}.base")
            backends = importlib.import_module(f"{package}.backends.base")
            exceptions = importlib.import_module(f"{package}.exceptions")
            signals = importlib.import_module(f"{package}.signals")
            root = importlib.import_module(package)
            normalize_json = importlib.import_module(utils).normalize_json
        except ImportError as exc:
            errors.append(f"{package}: {exc}")
            continue
        return SimpleNamespace(
            package=package,
            Task=base.Task,
            TaskResult=base.TaskResult,
            TaskResultStatus=base.TaskResultStatus,
            TaskContext=base.TaskContext,
            TaskError=base.TaskError,
            BaseTaskBackend=backends.BaseTaskBackend,
            TaskResultDoesNotExist=exceptions.TaskResultDoesNotExist,
            InvalidTask=getattr(exceptions, "InvalidTask", None)
            or exceptions.InvalidTaskError,  # the backport's name
            task_backends=root.task_backends,
            signals=signals,
            normalize_json=normalize_json,
        )
    raise ImportError(
        "que_core.contrib.django.tasks needs Django's Tasks framework: Django 6 "
        "(django.tasks), or on Django 5.2 the backport: pip install django-tasks "
        f"({'; '.join(errors)})"
    )


api = _load_api()
_BaseTaskBackend: Any = api.BaseTaskBackend

#: que-core priority = PRIORITY_OFFSET - Django priority.
PRIORITY_OFFSET = 100

# Set by QueTaskBackend.enqueue for TaskJob._data: whether the task has a run_after.
_deferred: contextvars.ContextVar[bool] = contextvars.ContextVar("que_task_deferred", default=False)

def _now() -> datetime:
    from django.utils import timezone

    now: datetime = timezone.now()
    return now


def _worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"[-64:]


def _parse_time(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else None


#: Tasks by module path: every Task a QueTaskBackend validated in this process.
_known: dict[str, Any] = {}
_known_lock = threading.Lock()


def _register(task: Any) -> None:
    with _known_lock:
        _known.setdefault(task.module_path, task)


def import_task_modules() -> None:
    """Import each installed app's ``tasks`` module, so that its tasks are
    known before any row is read (``manage.py que_work`` and the app's
    ``ready()`` do this when a que-core task backend is configured)."""
    from django.utils.module_loading import autodiscover_modules

    autodiscover_modules("tasks")


def configured() -> bool:
    """Whether a ``settings.TASKS`` backend is :class:`QueTaskBackend`."""
    from django.conf import settings

    backends = (getattr(settings, "TASKS", None) or {}).values()
    paths = [options.get("BACKEND") if isinstance(options, dict) else None for options in backends]
    return conf.names_subclass(paths, QueTaskBackend)


def _resolve_task(path: Any) -> Any:
    """The known ``Task`` at *path*; nothing is imported."""
    task = _known.get(path) if isinstance(path, str) else None
    if task is None:
        raise LookupError(
            f"{path!r} is not a Task known to this process (a function decorated with @task "
            "on a que-core backend, in a module imported at start-up: an app's tasks module "
            "or QUE['JOB_MODULES'])"
        )
    return task


class TaskJob(Job, register=False):
    """The que-core job that runs one Django task (registered by the Django
    app when a que-core task backend is configured).

    Its arguments: the task's module path, the backend alias, the task's
    args and kwargs. Its row keeps the task's timestamps, workers, errors and
    return value under ``data["django_task"]``.
    """

    job_name = "que_core.contrib.django.tasks.TaskJob"
    maximum_retry_count = 0
    keep_finished = True

    #: In inline mode (``RUN_MODE = "inline"``), what the run gave.
    return_value: Any = None

    def _data(self) -> dict[str, Any]:
        return {
            **super()._data(),
            "django_task": {
                "enqueued_at": _now().isoformat(),
                "deferred": _deferred.get(),
                "worker_ids": [],
                "errors": [],
            },
        }

    def run(
        self, task_path: str, backend_alias: str, args: list[Any], kwargs: dict[str, Any]
    ) -> None:
        backend = api.task_backends[backend_alias]
        if not isinstance(backend, QueTaskBackend):
            raise LookupError(f"the task backend {backend_alias!r} is not que-core's")
        self.maximum_retry_count = backend.max_retries  # type: ignore[misc]
        self.retry_interval = backend.retry_interval  # type: ignore[misc]
        task = _resolve_task(task_path)
        stored = self.id is not None and self.db is not None
        started = _now()
        if stored:
            assert self.db is not None
            at = started.isoformat()
            self.db.execute(q("django_task_started"), (at, at, _worker_id(), self.id))
            result = _read_result(self.db, str(self.id), backend_alias)
        else:
            result = _inline_result(task, backend_alias, args, kwargs, started)
        api.signals.task_started.send(type(backend), task_result=result)
        try:
            if task.takes_context:
                value = task.call(api.TaskContext(task_result=result), *args, **kwargs)
            else:
                value = task.call(*args, **kwargs)
            value = api.normalize_json(value)
            payload = json.dumps(value)
        except BaseException as exc:
            if stored:
                assert self.db is not None
                error = {
                    "exception_class_path": f"{type(exc).__module__}.{type(exc).__qualname__}",
                    "traceback": _traceback(exc),
                }
                self.db.execute(q("django_task_failed"),
                                (json.dumps(error), _now().isoformat(), self.id))
                if self.error_count + 1 > self.maximum_retry_count:
                    final = _read_result(self.db, str(self.id), backend_alias)
                    api.signals.task_finished.send(type(backend), task_result=_failed(final))
            raise
        self.return_value = value
        if stored:
            assert self.db is not None
            with self.transaction():
                self.db.execute(q("django_task_succeeded"), (payload, _now().isoformat(), self.id))
                self.finish()
            result = _read_result(self.db, str(self.id), backend_alias)
        api.signals.task_finished.send(type(backend), task_result=result)


def _traceback(exc: BaseException) -> str:
    import traceback

    return "".join(traceback.format_exception(exc))


def _failed(result: Any) -> Any:
    # Read before que-core records the error: the row does not say expired yet.
    object.__setattr__(result, "status", api.TaskResultStatus.FAILED)
    return result


def _inline_result(
    task: Any, alias: str, args: list[Any], kwargs: dict[str, Any], started: datetime
) -> Any:
    return api.TaskResult(
        task=task,
        id="",
        status=api.TaskResultStatus.RUNNING,
        enqueued_at=started,
        started_at=started,
        finished_at=None,
        last_attempted_at=started,
        args=args,
        kwargs=kwargs,
        backend=alias,
        errors=[],
        worker_ids=[_worker_id()],
    )


def _read_result(conn: Connection, result_id: str, alias: str) -> Any:
    missing = api.TaskResultDoesNotExist(f"no task result {result_id!r} in backend {alias!r}")
    try:
        job_id = int(result_id)
    except (TypeError, ValueError):
        raise missing from None
    rows = conn.execute(q("django_task_result"), (job_id,))
    if not rows or rows[0][0] != TaskJob.job_name:
        raise missing
    try:
        result = _result_from_row(job_id, alias, rows[0])
    except (LookupError, ValueError, TypeError, AttributeError, RecursionError) as exc:
        # Another program wrote the row, or an old version: not a result we can read.
        raise api.TaskResultDoesNotExist(
            f"task result {result_id!r} in backend {alias!r} cannot be read: {exc}"
        ) from None
    if result is None:
        raise missing
    return result


def _result_from_row(job_id: int, alias: str, row: Any) -> Any:
    """The TaskResult of a TaskJob row (None when it is another backend's);
    LookupError, ValueError or TypeError when the row is malformed."""
    (_job_class, queue, priority, run_at, error_count, args_text, _kwargs_text, data_text,
     finished, expired, locked) = row
    task_path, backend_alias, args, kwargs = json.loads(args_text)
    if backend_alias != alias:
        return None
    if not (isinstance(args, list) and isinstance(kwargs, dict)):
        raise TypeError("its args are not [task path, backend, args list, kwargs dict]")
    info = json.loads(data_text).get("django_task") or {}
    if not isinstance(info, dict):
        raise TypeError("data.django_task is not an object")
    status = api.TaskResultStatus
    worker_ids = [str(w) for w in info.get("worker_ids") or []]
    if expired:
        state = status.FAILED
    elif finished:
        state = status.SUCCESSFUL
    elif locked and len(worker_ids) > error_count:
        state = status.RUNNING
    else:
        state = status.READY
    try:
        task = _resolve_task(task_path).using(
            priority=PRIORITY_OFFSET - priority,
            queue_name=queue,
            backend=alias,
            run_after=run_at if info.get("deferred") else None,
        )
    except api.InvalidTask as exc:  # a priority or queue this backend refuses
        raise ValueError(str(exc)) from None
    result = api.TaskResult(
        task=task,
        id=str(job_id),
        status=state,
        enqueued_at=_parse_time(info.get("enqueued_at")),
        started_at=_parse_time(info.get("started_at")),
        finished_at=_parse_time(info.get("finished_at")) if finished or expired else None,
        last_attempted_at=_parse_time(info.get("last_attempted_at")),
        args=args,
        kwargs=kwargs,
        backend=alias,
        errors=[
            api.TaskError(
                exception_class_path=str(e.get("exception_class_path", "")),
                traceback=str(e.get("traceback", "")),
            )
            for e in info.get("errors") or []
        ],
        worker_ids=worker_ids,
    )
    if finished and "return_value" in info:
        object.__setattr__(result, "_return_value", info["return_value"])
    return result


class QueTaskBackend(_BaseTaskBackend):
    """Django Tasks backend storing tasks as que-core jobs."""

    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        options = self.options or {}
        self.database: str | None = options.get("DATABASE")
        self.max_retries = int(options.get("MAX_RETRIES", 0))
        interval = options.get("RETRY_INTERVAL")
        self.retry_interval: float | None = None if interval is None else float(interval)

    def validate_task(self, task: Any) -> None:
        """The framework's checks; a valid task is then known by its path
        (every Task is validated when defined, and again at enqueue)."""
        super().validate_task(task)
        _register(task)

    def enqueue(self, task: Any, args: Any, kwargs: Any) -> Any:
        self.validate_task(task)
        args = api.normalize_json(list(args))
        kwargs = api.normalize_json(dict(kwargs))
        run_at = task.run_after
        if run_at is not None:
            from django.utils import timezone

            if timezone.is_naive(run_at):
                run_at = timezone.make_aware(run_at)
        conn = db.connection(self.database)
        token = _deferred.set(run_at is not None)
        try:
            enqueued = TaskJob.enqueue(
                task.module_path,
                self.alias,
                args,
                kwargs,
                conn=conn,
                priority=PRIORITY_OFFSET - task.priority,
                queue=task.queue_name,
                run_at=run_at,
            )
        finally:
            _deferred.reset(token)
        if settings.run_mode is RunMode.INLINE:
            result = _inline_result(task, self.alias, args, kwargs, _now())
            object.__setattr__(result, "status", api.TaskResultStatus.SUCCESSFUL)
            object.__setattr__(result, "finished_at", _now())
            object.__setattr__(result, "_return_value", enqueued.return_value)
        else:
            result = _read_result(conn, str(enqueued.id), self.alias)
        api.signals.task_enqueued.send(type(self), task_result=result)
        return result

    def get_result(self, result_id: str) -> Any:
        return _read_result(db.connection(self.database), str(result_id), self.alias)

    def check(self, **kwargs: Any) -> list[Any]:
        from django.apps import apps
        from django.core import checks

        found = list(super().check(**kwargs))
        if not apps.is_installed("que_core.contrib.django"):
            found.append(
                checks.Error(
                    f"the task backend {self.alias!r} is que-core's, but "
                    f"'que_core.contrib.django' is not in INSTALLED_APPS",
                    hint="add it, and run `manage.py migrate` to create the que-core schema",
                    id="que.E010",
                )
            )
        return found

