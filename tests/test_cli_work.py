"""`que work` as a real subprocess: signals, kill -9, and the next worker."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from que_core.connection import Adapter, Connection
from tests.helpers import advisory_locks, job_count, log_tags, scalar, wait_for
from tests.jobs import HangFirstJob

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
