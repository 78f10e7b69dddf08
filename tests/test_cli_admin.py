"""`que` as a subprocess against the real server: migrate, stats, jobs, clear,
drop, --help everywhere, and bad input (unknown commands and flags, DSNs
that do not connect, missing or too new schemas)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conformance.fixtures import free_port, scalar, wait_until
from que_core.connection import Adapter, Connection
from que_core.migrations import LATEST_REVISION
from tests.helpers import job_count, session

ROOT = Path(__file__).resolve().parent.parent


def clean_env(**extra: str) -> dict[str, str]:
    """The test process's environment without any que setting in it."""
    env = {
        k: v for k, v in os.environ.items()
        if not (k.startswith("QUE_") or k == "DATABASE_URL") or k.startswith("QUE_TEST_")
    }
    env.update(extra)
    return env


def que(*args: str, input: str | None = None, env: dict[str, str] | None = None,
        cwd: Path = ROOT, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "que_core.cli", *args],
        cwd=cwd, input=input, stdin=None if input is not None else subprocess.DEVNULL,
        capture_output=True, text=True, timeout=timeout, env=env or clean_env(),
    )


def insert(db: Connection, *, queue: str = "default", job_class: str = "app.A",
           run_in: float = 0, error_count: int = 0, finished: bool = False,
           expired: bool = False, job_id: int | None = None, args: Any = (),
           kwargs: Any = None, tags: list[str] | None = None, age: float = 0) -> int:
    """A job row as any client would write it; returns its id."""
    rows = db.execute(
        "INSERT INTO que_jobs (id, queue, job_class, run_at, error_count, finished_at,"
        " expired_at, args, kwargs, data, job_schema_version, last_error_message)"
        " VALUES (coalesce(%s::bigint, nextval('que_jobs_id_seq')), %s, %s,"
        " now() + (%s::float8 - %s::float8) * interval '1 second', %s::int,"
        " CASE WHEN %s::boolean THEN now() END, CASE WHEN %s::boolean THEN now() END,"
        " %s::jsonb, %s::jsonb, %s::jsonb, 2, CASE WHEN %s::int > 0 THEN 'boom' END)"
        " RETURNING id",
        (job_id, queue, job_class, run_in, age, error_count, finished, expired,
         json.dumps(list(args)), json.dumps(kwargs or {}),
         json.dumps({"tags": tags} if tags else {}), error_count),
    )
    return int(rows[0][0])


@pytest.fixture
def holder(adapter: Adapter, dsn: str) -> Iterator[Connection]:
    """Another session, to hold job locks like a worker does."""
    yield from session(adapter, dsn)


def ok_json(out: subprocess.CompletedProcess[str]) -> Any:
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


# -- help and usage -------------------------------------------------------------

SUBCOMMANDS = [
    [], ["work"], ["migrate"], ["stats"], ["jobs"], ["jobs", "list"], ["jobs", "show"],
    ["jobs", "retry"], ["jobs", "expire"], ["jobs", "delete"], ["clear"], ["drop"],
    ["config"], ["demo"], ["web"],
]


@pytest.mark.parametrize("cmd", SUBCOMMANDS, ids=lambda c: " ".join(c) or "que")
def test_help_on_every_subcommand(cmd: list[str]) -> None:
    out = que(*cmd, "--help")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("Usage:")
    assert "Exit codes" in out.stdout


def test_top_level_help_lists_exit_codes_and_commands() -> None:
    out = que("--help")
    for word in ("work", "migrate", "stats", "jobs", "clear", "drop", "config", "demo", "web",
                 "3  cannot connect", "4  the database has no que schema"):
        assert word in out.stdout


def test_unknown_subcommand_and_flag_exit_2() -> None:
    out = que("nope")
    assert out.returncode == 2
    assert "No such command 'nope'" in out.stderr
    out = que("stats", "--nope")
    assert out.returncode == 2
    assert "No such option" in out.stderr
    assert "--nope" in out.stderr
    out = que("jobs", "list", "--state", "sleeping")
    assert out.returncode == 2
    assert "'sleeping' is not one of" in out.stderr
    out = que("jobs", "list", "--args", "{not json")
    assert out.returncode == 2
    assert "not JSON" in out.stderr


def test_missing_dsn_is_a_usage_error() -> None:
    out = que("stats")
    assert out.returncode == 2
    assert "no database given" in out.stderr
    assert "DATABASE_URL" in out.stderr


# -- bad databases ----------------------------------------------------------------


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP port that accepts connections and never says a word."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        s.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(OSError):  # the timeout, every 0.2 s
                accepted.append(s.accept()[0])

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield int(s.getsockname()[1])
    stop.set()
    t.join()
    for c in accepted:
        c.close()
    s.close()


@pytest.mark.parametrize("cmd", [["work", "conformance.jobs"], ["migrate"], ["stats"],
                                 ["jobs", "list"], ["clear", "default", "--yes"],
                                 ["drop", "--yes"]])
@pytest.mark.per_adapter
def test_refused_connection_exits_3_with_the_password_masked(
    cmd: list[str], adapter: Adapter
) -> None:
    dsn = f"postgresql://postgres:hunter2@127.0.0.1:{free_port()}/nowhere"
    began = time.monotonic()
    out = que(*cmd, "--dsn", dsn, "--adapter", adapter.name)
    assert time.monotonic() - began < 15
    assert out.returncode == 3, out.stderr
    assert "cannot connect" in out.stderr
    assert "hunter2" not in out.stderr + out.stdout
    assert "****" in out.stderr


@pytest.mark.per_adapter
@pytest.mark.parametrize("form", ["url", "keywords"])
def test_a_server_that_does_not_answer_fails_within_the_connect_timeout(
    silent_server: int, adapter: Adapter, form: str
) -> None:
    dsn = (
        f"postgresql://postgres:hunter2@127.0.0.1:{silent_server}/x" if form == "url"
        else f"host=127.0.0.1 port={silent_server} user=postgres password=hunter2"
    )
    began = time.monotonic()
    out = que("work", "--dsn", dsn, "--adapter", adapter.name, "--connect-timeout", "2")
    took = time.monotonic() - began
    assert out.returncode == 3, out.stderr
    assert took < 12
    assert "cannot connect" in out.stderr
    assert "hunter2" not in out.stderr


def test_the_connect_timeout_comes_from_the_environment_too(
    silent_server: int, adapter: Adapter
) -> None:
    env = clean_env(DATABASE_URL=f"postgresql://postgres@127.0.0.1:{silent_server}/x",
                    QUE_CONNECT_TIMEOUT="1")
    began = time.monotonic()
    out = que("stats", "--adapter", adapter.name, env=env)
    assert out.returncode == 3
    assert time.monotonic() - began < 10


@pytest.mark.parametrize("cmd", [["work", "conformance.jobs"], ["stats"], ["jobs", "list"],
                                 ["jobs", "show", "1"], ["clear", "default", "--yes"]])
def test_a_database_without_the_schema_says_run_que_migrate(
    cmd: list[str], empty_dsn: str, adapter: Adapter
) -> None:
    out = que(*cmd, "--dsn", empty_dsn, "--adapter", adapter.name)
    assert out.returncode == 4, out.stderr
    assert "run `que migrate`" in out.stderr


@pytest.mark.parametrize("cmd", [["work", "conformance.jobs"], ["stats"], ["migrate"],
                                 ["jobs", "list"], ["drop", "--yes"]])
def test_a_schema_newer_than_this_que_core_is_refused(
    cmd: list[str], conn: Connection, dsn: str, adapter: Adapter
) -> None:
    conn.execute("COMMENT ON TABLE que_jobs IS '8'")
    out = que(*cmd, "--dsn", dsn, "--adapter", adapter.name)
    assert out.returncode == 4, out.stderr
    assert "newer than this que-core" in out.stderr
    assert scalar(conn, "SELECT obj_description('que_jobs'::regclass)") == "8"


# -- migrate ------------------------------------------------------------------------


def test_migrate_up_down_and_status(empty_dsn: str, adapter: Adapter) -> None:
    base = ["--dsn", empty_dsn, "--adapter", adapter.name]
    assert ok_json(que("migrate", "--status", "--json", *base)) == {
        "version": 0, "latest": 7, "revision": 0, "latest_revision": LATEST_REVISION,
        "state": "missing"}
    out = que("migrate", "--status", *base)
    assert "run `que migrate`" in out.stdout
    out = que("migrate", *base)
    assert out.returncode == 0
    assert "from version 0 to 7" in out.stdout
    assert ok_json(que("migrate", "--status", "--json", *base))["state"] == "current"
    # Down asks first; no answer (stdin closed) is a no.
    out = que("migrate", "--to", "5", *base)
    assert out.returncode == 1
    assert "DOWN from version 7 to 5" in out.stderr
    assert ok_json(que("migrate", "--status", "--json", *base))["version"] == 7
    assert ok_json(que("migrate", "--to", "5", "--yes", "--json", *base)) == {
        "from": 7, "to": 5, "latest": 7, "revision_from": LATEST_REVISION, "revision_to": 0}
    assert ok_json(que("migrate", "--status", "--json", *base))["state"] == "older"
    out = que("stats", *base)
    assert out.returncode == 4
    assert "run `que migrate`" in out.stderr
    out = que("migrate", "--to", "3", *base, input="y\n")
    assert out.returncode == 0
    assert "from version 5 to 3" in out.stdout
    assert "migrated schema from version 3 to 7" in que("migrate", *base).stdout
    rev = LATEST_REVISION
    assert f"schema already at version 7, que-core revision {rev}" in que("migrate", *base).stdout
    assert (f"schema version 7, que-core revision {rev} (latest: 7, que-core revision {rev}): "
            "up to date") in que("migrate", "--status", *base).stdout
    out = que("migrate", "--to", "99", *base)
    assert out.returncode == 2  # a bad flag value, refused before connecting
    assert "versions go from 0" in out.stderr


# -- stats ------------------------------------------------------------------------------


def test_stats_counts_every_state_per_queue_and_class(
    db: Connection, dsn: str, adapter: Adapter, holder: Connection
) -> None:
    insert(db, age=30)  # ready, the oldest
    insert(db)  # ready
    insert(db, run_in=3600)  # scheduled
    insert(db, error_count=1, run_in=60)  # errored
    insert(db, error_count=16, expired=True)  # expired
    insert(db, finished=True)  # finished
    cancelled = insert(db, expired=True)
    db.execute("UPDATE que_jobs SET data = '{\"cancelled\": {\"at\": null, \"reason\": null}}' "
               "WHERE id = %s", (cancelled,))
    running = insert(db, job_id=2**33 + 7)  # a key with a high half: classid
    holder.execute("SELECT pg_advisory_lock(%s)", (running,))
    insert(db, queue="mail", job_class="app.Mail", error_count=2)  # errored, due now
    done_running = insert(db, queue="mail", job_class="app.Mail", finished=True)
    holder.execute("SELECT pg_advisory_lock(%s)", (done_running,))  # finished wins
    # A two-key advisory lock (as migrators take) is no job's.
    holder.execute("SELECT pg_advisory_lock(0, %s)", (insert(db, queue="mail",
                                                             job_class="app.Mail"),))

    data = ok_json(que("stats", "--json", "--dsn", dsn, "--adapter", adapter.name))
    rows = {(r["queue"], r["job_class"]): r for r in data["jobs"]}
    a = rows[("default", "app.A")]
    assert {k: a[k] for k in ("ready", "scheduled", "running", "errored", "expired",
                              "cancelled", "finished")} == {
        "ready": 2, "scheduled": 1, "running": 1, "errored": 1, "expired": 1, "cancelled": 1,
        "finished": 1}
    assert 29 < a["oldest_ready_age"] < 120
    mail = rows[("mail", "app.Mail")]
    assert (mail["ready"], mail["errored"], mail["finished"], mail["running"]) == (1, 1, 1, 0)
    assert data["totals"]["ready"] == 3
    assert data["workers"] == {"processes": 0, "threads": 0, "lockers": []}

    out = que("stats", "--dsn", dsn, "--adapter", adapter.name)
    assert out.returncode == 0
    header, first = out.stdout.splitlines()[:2]
    assert header.split() == ["QUEUE", "CLASS", "READY", "SCHEDULED", "RUNNING", "ERRORED",
                              "EXPIRED", "CANCELLED", "FINISHED", "OLDEST", "READY"]
    assert first.split()[:9] == ["default", "app.A", "2", "1", "1", "1", "1", "1", "1"]
    assert "workers: 0 process(es)" in out.stdout


def test_stats_shows_running_workers(db: Connection, dsn: str, adapter: Adapter) -> None:


    proc = subprocess.Popen(
        [sys.executable, "-m", "que_core.cli", "work", "--dsn", dsn, "--adapter", adapter.name,
         "-w", "3", "-q", "default", "-q", "other", "conformance.jobs"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=clean_env(),
    )
    try:
        wait_until(lambda: scalar(db, "SELECT count(*) FROM que_lockers") == 1, within=20)
        data = ok_json(que("stats", "--json", "--dsn", dsn, "--adapter", adapter.name))
        assert data["workers"]["processes"] == 1
        assert data["workers"]["threads"] == 3
        assert data["workers"]["lockers"][0]["queues"] == ["default", "other"]
        assert data["workers"]["lockers"][0]["process_pid"] == proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0


def test_stats_watch_refreshes_until_interrupted(
    db: Connection, dsn: str, adapter: Adapter
) -> None:
    insert(db)
    proc = subprocess.Popen(
        [sys.executable, "-m", "que_core.cli", "stats", "--watch", "--interval", "0.2",
         "--json", "--dsn", dsn, "--adapter", adapter.name],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env(),
    )
    try:
        assert proc.stdout is not None
        first = json.loads(proc.stdout.readline())
        insert(db)
        insert(db)
        later = first
        deadline = time.monotonic() + 20
        while later["totals"]["ready"] != 3 and time.monotonic() < deadline:
            later = json.loads(proc.stdout.readline())
        assert first["totals"]["ready"] == 1
        assert later["totals"]["ready"] == 3
        proc.send_signal(signal.SIGINT)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for f in (proc.stdout, proc.stderr):
            if f:
                f.close()


def test_stats_watch_text_mode_repeats_with_a_timestamp(
    db: Connection, dsn: str, adapter: Adapter
) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "que_core.cli", "stats", "--watch", "--interval", "0.2",
         "--dsn", dsn, "--adapter", adapter.name],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=clean_env(),
    )
    assert proc.stdout is not None
    lines = [proc.stdout.readline() for _ in range(6)]
    proc.send_signal(signal.SIGINT)
    assert proc.wait(15) == 0
    proc.stdout.close()
    assert sum("Ctrl-C to stop" in ln for ln in lines) >= 2
    assert "no jobs" in "".join(lines)


# -- jobs ---------------------------------------------------------------------------------


@pytest.mark.per_adapter
def test_jobs_list_filters(db: Connection, dsn: str, adapter: Adapter) -> None:
    base = ["--dsn", dsn, "--adapter", adapter.name, "--json"]
    a1 = insert(db, args=[1, {"user": 7}], tags=["red", "blue"])
    a2 = insert(db, args=[2], kwargs={"user": 7, "x": 1}, run_in=600)
    b1 = insert(db, queue="mail", job_class="app.Mail", args=[1], tags=["blue"], error_count=1)
    wrapped = insert(db, job_class="ActiveJob::QueueAdapters::QueAdapter::JobWrapper",
                     args=[{"job_class": "SendEmail", "arguments": [1]}])

    def ids(*flags: str) -> list[int]:
        return [j["id"] for j in ok_json(que("jobs", "list", *base, *flags))]

    assert ids() == [a1, a2, b1, wrapped]
    assert ids("--queue", "mail") == [b1]
    assert ids("-q", "mail", "-q", "default") == [a1, a2, b1, wrapped]
    assert ids("--class", "app.A") == [a1, a2]
    assert ids("--class", "SendEmail") == [wrapped]  # a Ruby ActiveJob's own class
    assert ids("--state", "scheduled") == [a2]
    assert ids("--state", "errored", "--state", "scheduled") == [a2, b1]
    assert ids("--tag", "blue") == [a1, b1]
    assert ids("--tag", "red") == [a1]
    assert ids("--args", "[1]") == [a1, b1]
    assert ids("--args", '[{"user": 7}]') == [a1]
    assert ids("--kwargs", '{"user": 7}') == [a2]
    assert ids("--tag", "blue", "--queue", "default") == [a1]
    assert ids("--limit", "2") == [a1, a2]
    listed = ok_json(que("jobs", "list", *base, "--tag", "red"))[0]
    assert listed["args"] == [1, {"user": 7}]
    assert listed["tags"] == ["red", "blue"]
    assert listed["state"] == "ready"
    assert listed["run_at"].endswith("Z")
    shown = ok_json(que("jobs", "list", *base, "--class", "SendEmail"))[0]
    assert shown["job_class"] == "SendEmail"
    assert shown["stored_job_class"] == "ActiveJob::QueueAdapters::QueAdapter::JobWrapper"

    text = que("jobs", "list", "--dsn", dsn, "--adapter", adapter.name, "--queue", "mail")
    assert text.returncode == 0
    assert text.stdout.splitlines()[0].split()[:4] == ["ID", "QUEUE", "CLASS", "STATE"]
    assert text.stdout.splitlines()[1].split()[:4] == [str(b1), "mail", "app.Mail", "errored"]
    assert "boom" in text.stdout
    empty = que("jobs", "list", "--dsn", dsn, "--adapter", adapter.name, "--queue", "none")
    assert empty.stdout.strip() == "no jobs"


def test_jobs_show(db: Connection, dsn: str, adapter: Adapter) -> None:
    base = ["--dsn", dsn, "--adapter", adapter.name]
    job = insert(db, queue="mail", args=["x"], kwargs={"k": 1}, tags=["t"], error_count=2)
    db.execute("UPDATE que_jobs SET last_error_backtrace = %s WHERE id = %s",
               ("Traceback:\n  line 1\nValueError: boom", job))
    data = ok_json(que("jobs", "show", str(job), "--json", *base))
    assert data["id"] == job
    assert data["state"] == "errored"
    assert data["args"] == ["x"]
    assert data["kwargs"] == {"k": 1}
    assert data["tags"] == ["t"]
    assert data["last_error_backtrace"].endswith("ValueError: boom")
    out = que("jobs", "show", str(job), *base)
    assert out.returncode == 0
    assert f"id:                   {job}" in out.stdout
    assert "queue:                mail" in out.stdout
    assert "  ValueError: boom" in out.stdout
    missing = que("jobs", "show", "999999", *base)
    assert missing.returncode == 1
    assert "no job with id 999999" in missing.stderr


def _state(db: Connection, job: int) -> tuple[Any, ...] | None:
    rows = db.execute(
        "SELECT run_at <= now(), error_count, expired_at IS NOT NULL, finished_at IS NOT NULL"
        " FROM que_jobs WHERE id = %s", (job,))
    return tuple(rows[0]) if rows else None


def test_retry_expire_delete_by_id(
    db: Connection, dsn: str, adapter: Adapter, holder: Connection
) -> None:
    base = ["--dsn", dsn, "--adapter", adapter.name]
    errored = insert(db, error_count=3, run_in=3600)
    expired = insert(db, error_count=16, expired=True)
    finished = insert(db, finished=True)
    running = insert(db)
    holder.execute("SELECT pg_advisory_lock(%s)", (running,))

    out = que("jobs", "retry", str(errored), str(expired), *base)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "retried 2 jobs"
    assert _state(db, errored) == (True, 3, False, False)  # due now, error count kept
    assert _state(db, expired) == (True, 16, False, False)  # no longer expired

    data = ok_json(que("jobs", "retry", str(finished), str(running), "--json", *base))
    assert data == {"action": "retry", "matched": 2, "changed": 0, "skipped_running": 1,
                    "not_found": []}
    assert _state(db, finished) == (True, 0, False, True)

    out = que("jobs", "expire", str(errored), str(running), *base)
    assert out.returncode == 0
    assert out.stdout.strip() == "expired 1 job (1 skipped: running now)"
    assert _state(db, errored) == (True, 3, True, False)

    out = que("jobs", "delete", str(errored), str(running), "424242", *base)
    assert out.returncode == 1  # one of them does not exist
    assert "deleted 1 job (1 skipped: running now)" in out.stdout
    assert "no job with id 424242" in out.stderr
    assert _state(db, errored) is None
    assert _state(db, running) is not None
    holder.execute("SELECT pg_advisory_unlock_all()")
    assert que("jobs", "delete", str(running), *base).stdout.strip() == "deleted 1 job"


def test_bulk_forms_ask_for_confirmation_unless_yes(
    db: Connection, dsn: str, adapter: Adapter
) -> None:
    base = ["--dsn", dsn, "--adapter", adapter.name]
    for _ in range(3):
        insert(db, queue="mail", error_count=1, run_in=600)
    keep = insert(db, queue="other")

    out = que("jobs", "retry", *base)
    assert out.returncode == 2
    assert "say which jobs" in out.stderr

    out = que("jobs", "retry", "--queue", "mail", *base, input="n\n")
    assert out.returncode == 1
    assert "Run 3 jobs now?" in out.stderr
    assert "Aborted" in out.stderr
    assert scalar(db, "SELECT count(*) FROM que_jobs WHERE run_at <= now()") == 1

    out = que("jobs", "retry", "--queue", "mail", *base)  # no answer at all: no
    assert out.returncode == 1
    assert scalar(db, "SELECT count(*) FROM que_jobs WHERE run_at <= now()") == 1

    out = que("jobs", "retry", "--queue", "mail", *base, input="y\n")
    assert out.returncode == 0
    assert "retried 3 jobs" in out.stdout
    assert scalar(db, "SELECT count(*) FROM que_jobs WHERE run_at <= now()") == 4

    data = ok_json(que("jobs", "expire", "--state", "errored", "--yes", "--json", *base))
    assert data["changed"] == 3
    out = que("jobs", "delete", "--state", "expired", *base, input="y\n")
    assert "Delete 3 jobs?" in out.stderr
    assert "deleted 3 jobs" in out.stdout
    assert [r[0] for r in db.execute("SELECT id FROM que_jobs")] == [keep]

    out = que("jobs", "delete", "--queue", "nothing-here", *base)
    assert out.returncode == 0
    assert "deleted 0 jobs" in out.stdout

    assert ok_json(que("jobs", "delete", "--all", "--yes", "--json", *base))["changed"] == 1
    assert job_count(db) == 0


def test_clear_asks_and_deletes_a_queue(
    db: Connection, dsn: str, adapter: Adapter, holder: Connection
) -> None:
    base = ["--dsn", dsn, "--adapter", adapter.name]
    for kw in ({}, {"finished": True}, {"expired": True}, {"run_in": 60}):
        insert(db, queue="mail", **kw)
    running = insert(db, queue="mail")
    holder.execute("SELECT pg_advisory_lock(%s)", (running,))
    other = insert(db, queue="default")

    out = que("clear", "mail", *base, input="n\n")
    assert out.returncode == 1
    assert "Delete all 5 jobs of queue mail (1 running now" in out.stderr
    assert job_count(db) == 6

    out = que("clear", "mail", *base, input="y\n")
    assert out.returncode == 0
    assert out.stdout.strip() == "deleted 4 jobs (1 skipped: running now)"
    assert sorted(r[0] for r in db.execute("SELECT id FROM que_jobs")) == [running, other]

    holder.execute("SELECT pg_advisory_unlock_all()")
    data = ok_json(que("clear", "mail", "default", "--yes", "--json", *base))
    assert data["changed"] == 2
    assert job_count(db) == 0
    out = que("clear", "mail", *base)
    assert out.returncode == 0
    assert "deleted 0 jobs" in out.stdout
    assert que("clear", *base).returncode == 2  # no queue named


def test_drop_asks_then_drops_the_schema(db: Connection, dsn: str, adapter: Adapter) -> None:
    base = ["--dsn", dsn, "--adapter", adapter.name]
    insert(db)
    out = que("drop", *base, input="n\n")
    assert out.returncode == 1
    assert "Drop the que schema (version 7) and its 1 job(s)" in out.stderr
    assert scalar(db, "SELECT to_regclass('que_jobs') IS NOT NULL") is True

    out = que("drop", *base, input="y\n")
    assert out.returncode == 0
    assert "dropped the que schema (was version 7)" in out.stdout
    assert scalar(db, "SELECT to_regclass('que_jobs') IS NULL") is True
    assert scalar(db, "SELECT count(*) FROM pg_proc WHERE left(proname, 4) = 'que_'") == 0

    out = que("drop", "--json", *base)
    assert ok_json(out) == {"dropped": False, "from": 0}
    out = que("stats", *base)
    assert out.returncode == 4
    assert "run `que migrate`" in out.stderr
    assert que("migrate", *base).returncode == 0
