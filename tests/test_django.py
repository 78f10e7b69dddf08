"""The Django app: migrate, enqueue in Django's transaction, que_work, checks."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("django")

from conformance.fixtures import scalar, wait_until
from conformance.jobs import PlainJob
from tests import django_support
from tests.django_support import DjangoDatabase
from tests.helpers import Collected, job_count

ROOT = Path(__file__).resolve().parent.parent

django_support.setup()
django_db = django_support.django_db  # the fixture

from django.core import checks  # noqa: E402
from django.core.exceptions import ImproperlyConfigured  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, connections, transaction  # noqa: E402
from django.test import override_settings  # noqa: E402

from que_core import LATEST_VERSION, bulk_enqueue, current_version  # noqa: E402
from que_core.contrib.django import db  # noqa: E402
from que_core.contrib.django.checks import check_settings  # noqa: E402
from que_core.testing import assert_enqueued, drain  # noqa: E402
from tests.django_app.jobs import FailingOrmJob, OrmJob  # noqa: E402
from tests.django_app.models import Event  # noqa: E402


def args_of(d: DjangoDatabase) -> list[Any]:
    import json

    rows = d.conn.execute("SELECT args::text FROM que_jobs ORDER BY id")
    return [json.loads(r[0])[0] for r in rows]


# -- migrate ---------------------------------------------------------------------


def test_migrate_creates_and_removes_the_schema(django_db: DjangoDatabase) -> None:
    assert current_version(django_db.conn) == LATEST_VERSION
    call_command("migrate", "que", "zero", verbosity=0)
    assert current_version(django_db.conn) == 0
    # A schema `que migrate` made first is taken as it is.
    from que_core import migrate

    migrate(django_db.conn)
    call_command("migrate", "que", verbosity=0)
    assert current_version(django_db.conn) == LATEST_VERSION


def test_the_last_django_migration_reaches_the_latest_schema() -> None:
    migrations = sorted(
        p.stem for p in (ROOT / "que_core/contrib/django/migrations").glob("0*.py")
    )
    last = importlib.import_module(f"que_core.contrib.django.migrations.{migrations[-1]}")
    assert last.SCHEMA_VERSION == LATEST_VERSION, (
        "que-core's schema moved on: add a Django migration that migrates to it"
    )


def test_migrate_leaves_other_databases_alone(django_db: DjangoDatabase) -> None:
    call_command("migrate", database="sqlite", verbosity=0)  # no que schema there, no error
    with override_settings(QUE={"DATABASE": "sqlite"}), pytest.raises(
        ImproperlyConfigured, match="needs PostgreSQL"
    ):
        call_command("migrate", "que", "zero", database="sqlite", verbosity=0)
        call_command("migrate", "que", database="sqlite", verbosity=0)


# -- enqueue in Django's transaction ----------------------------------------------


def test_enqueue_commits_and_rolls_back_with_atomic(django_db: DjangoDatabase) -> None:
    with transaction.atomic():
        PlainJob.enqueue("committed")
        assert job_count(django_db.conn) == 0  # not yet visible from outside
    with pytest.raises(RuntimeError), transaction.atomic():
        PlainJob.enqueue("rolled back")
        raise RuntimeError("roll back")
    assert args_of(django_db) == ["committed"]


def test_enqueue_in_a_nested_atomic_block(django_db: DjangoDatabase) -> None:
    with transaction.atomic():
        PlainJob.enqueue("outer")
        with pytest.raises(RuntimeError), transaction.atomic():
            PlainJob.enqueue("inner")
            raise RuntimeError("roll back the savepoint")
        PlainJob.enqueue("after")
    assert args_of(django_db) == ["outer", "after"]


def test_aenqueue_in_an_async_view_as_the_docs_say(django_db: DjangoDatabase) -> None:
    import asyncio

    from asgiref.sync import sync_to_async

    from que_core.errors import ConfigurationError

    async def view() -> None:
        # No async Django transaction to join: refused, never Django's sync connection.
        with pytest.raises(ConfigurationError, match="sync_to_async"):
            await PlainJob.aenqueue("async view")

        @sync_to_async
        def in_atomic() -> None:
            with transaction.atomic():
                PlainJob.enqueue("in atomic")
            connection.close()  # this thread's: the test's own stays

        await in_atomic()

    asyncio.run(view())
    assert args_of(django_db) == ["in atomic"]


def test_enqueue_outside_atomic_commits_at_once(django_db: DjangoDatabase) -> None:
    PlainJob.enqueue("autocommit")
    assert args_of(django_db) == ["autocommit"]


def test_bulk_enqueue_first_in_atomic_rolls_back_with_it(django_db: DjangoDatabase) -> None:
    # The bulk insert's transaction block is a Django savepoint: it must not
    # commit Django's transaction, which began with it.
    with pytest.raises(RuntimeError), transaction.atomic():
        with bulk_enqueue():
            PlainJob.enqueue("a")
            PlainJob.enqueue("b")
        raise RuntimeError("roll back")
    assert job_count(django_db.conn) == 0
    with transaction.atomic():
        PlainJob.enqueue_many([["c"], ["d"]])
    assert args_of(django_db) == ["c", "d"]


def test_enqueue_with_a_django_connection_object(django_db: DjangoDatabase) -> None:
    with transaction.atomic():
        PlainJob.enqueue("proxy", conn=connection)
        PlainJob.enqueue("wrapper", conn=connections["default"])
        PlainJob.enqueue("que connection", conn=db.connection())
    assert args_of(django_db) == ["proxy", "wrapper", "que connection"]
    assert type(db.connection().raw).__module__.split(".")[0] == django_db.adapter.name


def test_job_and_orm_rows_share_the_transaction(django_db: DjangoDatabase) -> None:
    with pytest.raises(RuntimeError), transaction.atomic():
        Event.objects.create(name="rolled back")
        OrmJob.enqueue("rolled back")
        raise RuntimeError("roll back")
    with transaction.atomic():
        Event.objects.create(name="kept")
        OrmJob.enqueue("kept")
    assert list(Event.objects.values_list("name", flat=True)) == ["kept"]
    assert args_of(django_db) == ["kept"]


def test_testing_helpers_see_the_tests_transaction(django_db: DjangoDatabase) -> None:
    with transaction.atomic():
        OrmJob.enqueue("in the transaction", queue="q1")
        assert_enqueued(OrmJob, args=["in the transaction"], queue="q1")
        ran = drain()  # on Django's connection: the job sees the uncommitted rows
        assert [j.job_class for j in ran] == [OrmJob.job_name]
        assert Event.objects.get().name == "in the transaction"
        transaction.set_rollback(True)
    assert Event.objects.count() == 0 and job_count(django_db.conn) == 0


# -- a non-PostgreSQL database, bad settings ----------------------------------------


def test_a_database_that_is_not_postgresql_is_a_clear_error(django_db: DjangoDatabase) -> None:
    with pytest.raises(ImproperlyConfigured, match=r"needs PostgreSQL.*'sqlite'.*sqlite3"):
        db.connection("sqlite")
    with pytest.raises(ImproperlyConfigured, match="needs PostgreSQL"):
        PlainJob.enqueue("x", conn=connections["sqlite"])
    with override_settings(QUE={"DATABASE": "sqlite"}):
        assert [m.id for m in check_settings()] == ["que.E002"]
        with pytest.raises(ImproperlyConfigured, match="needs PostgreSQL"):
            PlainJob.enqueue("x")  # the provider uses QUE["DATABASE"]
    with override_settings(QUE={"DATABASE": "missing"}):
        assert [m.id for m in check_settings()] == ["que.E001"]
        with pytest.raises(ImproperlyConfigured, match=r"'missing'.*not in settings\.DATABASES"):
            db.connection()
    with override_settings(QUE={"QUEUS": ["typo"], "RUN_MODE": "later"}):
        assert sorted(m.id for m in check_settings()) == ["que.E003", "que.W001"]
    with override_settings(QUE={"ADAPTER": "nonesuch"}):
        assert [m.id for m in check_settings()] == ["que.W002"]
    assert check_settings() == []
    assert not [m for m in checks.run_checks() if m.id and m.id.startswith("que.")]


def test_worker_dsn_is_built_from_databases(django_db: DjangoDatabase) -> None:
    from que_core.dsn import parse_dsn

    params = parse_dsn(db.worker_dsn())
    assert params["dbname"] == connection.settings_dict["NAME"]
    with override_settings(QUE={"DSN": "postgresql://elsewhere/db"}):
        assert db.worker_dsn() == "postgresql://elsewhere/db"
    saved = dict(connection.settings_dict)
    try:
        connection.settings_dict.update(
            PASSWORD="it's a \\ secret", OPTIONS={"sslmode": "disable", "pool": {"x": 1}}
        )
        params = parse_dsn(db.worker_dsn())
        assert params["password"] == "it's a \\ secret"
        assert params["sslmode"] == "disable" and "pool" not in params
    finally:
        connection.settings_dict.clear()
        connection.settings_dict.update(saved)


# -- workers -------------------------------------------------------------------------


def test_in_process_worker_runs_orm_jobs_and_closes_stale_connections(
    django_db: DjangoDatabase,
) -> None:
    from que_core import Worker

    for name in ("one", "two"):
        OrmJob.enqueue(name)
    FailingOrmJob.enqueue("three")
    worker = Worker(django_db.dsn, adapter=django_db.adapter, worker_count=1,
                    poll_interval=0.2).start()
    try:
        wait_until(lambda: Event.objects.count() == 3 and job_count(django_db.conn) == 1)
    finally:
        worker.stop(timeout=10)
    events = list(Event.objects.order_by("id"))
    assert [e.name for e in events] == ["one", "two", "three"]
    assert {e.thread for e in events} == {"que-worker-0"}
    # CONN_MAX_AGE = 0: the worker thread's Django connection was closed after
    # each job (as after each request), so each job had a new session.
    assert len({e.backend_pid for e in events}) == 3
    main_thread = 1 if connection.connection is not None else 0

    def sessions() -> int:
        return int(scalar(
            django_db.conn,
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND backend_type = 'client backend'",
        ))

    # No session left behind by the worker's thread. A closed session's backend
    # leaves pg_stat_activity a moment after the client closed it (CI, on two
    # busy cores, once still saw it): a leaked one stays.
    wait_until(lambda: sessions() == main_thread, within=5,
               what=f"{main_thread} session(s) on the test database")
    assert sessions() == main_thread


def _que_work(dsn: str, *args: str) -> Collected:
    env = dict(os.environ)
    env.update(
        QUE_DJANGO_DATABASE_URL=dsn,
        DJANGO_SETTINGS_MODULE="tests.django_settings",
        PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]),
    )
    return Collected([sys.executable, "-m", "django", "que_work", "-w", "2", "-i", "0.2", *args],
                     env, merged=True)


def test_que_work_command(django_db: DjangoDatabase) -> None:
    for name in ("a", "b", "c"):
        OrmJob.enqueue(name, queue="work")
    PlainJob.enqueue("not this queue")
    work = _que_work(django_db.dsn, "--queue", "work")
    try:
        # the jobs' ORM writes commit before the worker deletes the jobs
        wait_until(lambda: Event.objects.count() == 3 and job_count(django_db.conn) == 1,
                 within=30)
        assert sorted(Event.objects.values_list("name", flat=True)) == ["a", "b", "c"]
    finally:
        code = work.stop()
    text = work.text
    assert code == 0, text
    assert "worker started: queues work" in text and "worker stopped" in text


def test_que_work_with_processes(django_db: DjangoDatabase) -> None:
    work = _que_work(django_db.dsn, "--queue", "work", "--processes", "2", "-w", "1")
    try:
        def lockers() -> list[int]:
            return sorted(int(r[0]) for r in django_db.conn.execute(
                "SELECT ruby_pid FROM que_lockers"))

        pids = wait_until(lambda: (lambda p: p if len(p) == 2 else None)(lockers()), within=60)
        assert work.proc.pid not in pids  # the supervisor's children, each registered
        for name in ("a", "b", "c"):
            OrmJob.enqueue(name, queue="work")
        wait_until(lambda: Event.objects.count() == 3 and job_count(django_db.conn) == 0,
                 within=30)
    finally:
        code = work.stop()
    text = work.text
    assert code == 0, text
    assert text.count("que-core worker started") == text.count("que-core worker stopped") == 2
    assert scalar(django_db.conn, "SELECT count(*) FROM que_lockers") == 0


def test_que_work_reports_a_missing_schema_clearly(django_db: DjangoDatabase) -> None:
    call_command("migrate", "que", "zero", verbosity=0)
    work = _que_work(django_db.dsn)
    work.proc.wait(60)
    assert work.stop() == 1
    assert "no que schema" in work.text and "Traceback" not in work.text


def test_a_bad_run_mode_is_reported_by_the_check_instead_of_crashing(
    tmp_path: Path, server_dsn: str
) -> None:
    (tmp_path / "bogus_settings.py").write_text(
        "from tests.django_settings import *  # noqa: F403\n"
        "QUE = {**QUE, 'RUN_MODE': 'bogus'}  # noqa: F405\n", encoding="utf-8")
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="bogus_settings",
               QUE_DJANGO_DATABASE_URL=server_dsn,
               PYTHONPATH=os.pathsep.join([str(tmp_path), str(ROOT),
                                           os.environ.get("PYTHONPATH", "")]))
    for command in (["check"], ["que_work"]):
        out = subprocess.run([sys.executable, "-m", "django", *command], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 1, out.stdout + out.stderr
        assert "(que.E003) QUE['RUN_MODE'] is 'bogus'" in out.stderr
        assert "HINT: use 'queue' or 'inline'" in out.stderr
        assert "Traceback" not in out.stderr and "ValueError" not in out.stderr


# -- the same suite on Django's other PostgreSQL backend --------------------------------


@pytest.mark.slow
def test_django_tests_pass_on_the_psycopg2_backend() -> None:
    if os.environ.get(django_support.DRIVER_ENV):
        pytest.skip("this is the psycopg2 run")
    pytest.importorskip("psycopg2")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg 3 is not installed: the main run already used psycopg2")
    from que_core.plugins import adapters

    if "psycopg2" not in adapters():
        pytest.skip("the psycopg2 adapter is not installed")
    env = dict(os.environ, **{django_support.DRIVER_ENV: "psycopg2"})
    files = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").glob("test_django*.py"))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x", *files],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    tail = result.stdout[-3000:] + result.stderr[-2000:]
    assert result.returncode == 0, tail
    assert " passed" in result.stdout and " failed" not in result.stdout, tail
