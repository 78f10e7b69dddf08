"""`que work` as a real subprocess: signals, kill -9, and the next worker."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conformance.fixtures import scalar, wait_until
from conformance.jobs import HangsFirst, SelfResolving
from que_core.connection import Adapter, Connection
from que_core.foreground import EXIT_SECOND_SIGNAL, EXIT_UNFINISHED
from tests.helpers import advisory_locks, job_count, log_tags, que_work_processes
from tests.test_cli_admin import clean_env

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def spawn(adapter: Adapter, dsn: str) -> Iterator[Any]:
    with que_work_processes(dsn, adapter.name, ("conformance.jobs",)) as start:
        yield start


def _lockers(db: Connection) -> int:
    return int(scalar(db, "SELECT count(*) FROM que_lockers"))


def _output(proc: subprocess.Popen[bytes]) -> str:
    assert proc.stdout is not None
    return proc.stdout.read().decode(errors="replace")


class _Reader:
    """The output of a running process, read as it comes."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.chunks: list[bytes] = []
        assert proc.stdout is not None
        stream = proc.stdout
        self.thread = threading.Thread(
            target=lambda: self.chunks.extend(iter(lambda: stream.read1(4096), b"")),
            daemon=True)
        self.thread.start()

    @property
    def text(self) -> str:
        return b"".join(self.chunks).decode(errors="replace")


def test_shutdown_timeout_exits_5_with_a_hung_job(db: Connection, spawn: Any) -> None:
    proc = spawn("--shutdown-timeout", "0.5")
    wait_until(lambda: _lockers(db) == 1, within=20)
    HangsFirst.enqueue("hang", conn=db.raw)
    wait_until(lambda: log_tags(db, "start") == ["hang"])
    proc.send_signal(signal.SIGINT)
    assert proc.wait(15) == EXIT_UNFINISHED == 5
    out = _output(proc)
    assert "received SIGINT: finishing running jobs" in out
    assert "exiting with status 5: the shutdown deadline passed with jobs unfinished" in out
    assert job_count(db) == 1  # still there, to be worked again
    wait_until(lambda: advisory_locks(db) == 0)


def test_a_second_signal_exits_6_at_once_and_says_so(db: Connection, spawn: Any) -> None:
    proc = spawn()  # no deadline: the first signal waits for the hung job
    wait_until(lambda: _lockers(db) == 1, within=20)
    HangsFirst.enqueue("hang", conn=db.raw)
    wait_until(lambda: log_tags(db, "start") == ["hang"])
    out = _Reader(proc)
    proc.send_signal(signal.SIGTERM)
    wait_until(lambda: "received SIGTERM: finishing running jobs" in out.text, within=20)
    time.sleep(0.5)
    assert proc.poll() is None  # waiting for the hung job
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(15) == EXIT_SECOND_SIGNAL == 6
    out.thread.join(10)
    assert "received SIGTERM again: exiting at once with status 6; 1 running job(s)" in out.text
    assert job_count(db) == 1
    wait_until(lambda: advisory_locks(db) == 0)


def test_a_clean_stop_exits_0(db: Connection, spawn: Any) -> None:
    proc = spawn()
    wait_until(lambda: _lockers(db) == 1, within=20)
    SelfResolving.enqueue("quick", conn=db.raw)
    wait_until(lambda: log_tags(db) == ["quick"])
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(15) == 0
    assert "exiting with status" not in _output(proc)


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


def test_a_signal_while_the_worker_starts_stops_it_cleanly(
    tmp_path: Path, dsn: str, adapter: Adapter
) -> None:
    # A plugin makes Worker.start() slow (its que_worker_started hook is
    # called inside it), so that SIGTERM surely arrives while it starts.
    marker = tmp_path / "starting"
    (tmp_path / "slowstart.py").write_text(
        "import os, pathlib, time\n"
        "from que_core import hookimpl\n"
        "from que_core.plugins import plugin_manager\n\n"
        "class SlowStart:\n"
        "    @hookimpl\n"
        "    def que_worker_started(self, worker):\n"
        "        pathlib.Path(os.environ['MARKER']).write_text('x')\n"
        "        time.sleep(2)\n\n"
        "plugin_manager().register(SlowStart())\n", encoding="utf-8")
    env = clean_env(MARKER=str(marker))
    proc = subprocess.Popen(
        [sys.executable, "-m", "que_core.cli", "work", "--dsn", dsn, "--adapter", adapter.name,
         "slowstart"], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_until(marker.exists, within=30)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        out = _output(proc)
        assert "received SIGTERM: finishing running jobs" in out
        assert "worker stopped" in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        if proc.stdout:
            proc.stdout.close()
