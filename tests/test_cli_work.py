"""`que work` as a real subprocess: signals, kill -9, and the next worker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from que_core.connection import Adapter, Connection
from tests.helpers import advisory_locks, job_count, log_tags, scalar, wait_for
from tests.jobs import HangFirstJob, SleepJob

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def spawn(adapter: Adapter, dsn: str) -> Iterator[Any]:
    procs: list[subprocess.Popen[bytes]] = []

    def start(*extra: str) -> subprocess.Popen[bytes]:
        cmd = [sys.executable, "-m", "que_core.cli", "work", "--dsn", dsn,
               "--adapter", adapter.name, "-i", "0.2", *extra, "tests.jobs"]
        p = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        procs.append(p)
        return p

    yield start
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait(10)
        if p.stdout:
            p.stdout.close()


def _lockers(db: Connection) -> int:
    return int(scalar(db, "SELECT count(*) FROM que_lockers"))


def test_sigterm_finishes_the_running_job_and_exits(db: Connection, spawn: Any) -> None:
    proc = spawn()
    wait_for(lambda: _lockers(db) == 1, timeout=20)
    SleepJob.enqueue("term", 1.0, conn=db.raw)
    wait_for(lambda: log_tags(db, "start") == ["term"])
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(15) == 0
    assert log_tags(db, "done") == ["term"]
    assert job_count(db) == 0
    assert _lockers(db) == 0
    assert advisory_locks(db) == 0


def test_kill_9_mid_job_and_the_next_worker_runs_it_at_once(db: Connection, spawn: Any) -> None:
    first = spawn()
    wait_for(lambda: _lockers(db) == 1, timeout=20)
    job = HangFirstJob.enqueue("crash", conn=db.raw)
    wait_for(lambda: log_tags(db, "start") == ["crash"])
    os.kill(first.pid, signal.SIGKILL)
    first.wait(10)
    # The row is exactly as it was: no error recorded, nothing marked.
    row = db.execute(
        "SELECT error_count, finished_at, expired_at FROM que_jobs WHERE id = %s", (job.id,)
    )
    assert row == [(0, None, None)]
    wait_for(lambda: advisory_locks(db) == 0)  # the session died with its locks
    began = time.monotonic()
    spawn()
    wait_for(lambda: log_tags(db, "done") == ["crash"], timeout=20)
    assert time.monotonic() - began < 20
    assert job_count(db) == 0
    # The dead process's que_lockers row was cleaned by the new worker.
    wait_for(lambda: _lockers(db) == 1)


def test_shutdown_timeout_exits_with_a_hung_job(db: Connection, spawn: Any) -> None:
    proc = spawn("--shutdown-timeout", "0.5")
    wait_for(lambda: _lockers(db) == 1, timeout=20)
    HangFirstJob.enqueue("hang", conn=db.raw)
    wait_for(lambda: log_tags(db, "start") == ["hang"])
    proc.send_signal(signal.SIGINT)
    assert proc.wait(15) == 0
    assert job_count(db) == 1  # still there, to be worked again
    wait_for(lambda: advisory_locks(db) == 0)


def test_work_refuses_a_database_without_schema(empty_dsn: str, adapter: Adapter) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "que_core.cli", "work", "--dsn", empty_dsn,
         "--adapter", adapter.name],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert out.returncode != 0
    assert "que migrate" in out.stderr


def test_unknown_adapter_names_the_installed_ones(dsn: str) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "que_core.cli", "work", "--dsn", dsn, "--adapter", "nope"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert out.returncode != 0
    assert "'nope' is not installed" in out.stderr
    assert "installed adapters:" in out.stderr
