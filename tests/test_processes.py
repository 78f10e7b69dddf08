"""`que work --processes N`: a supervisor and its worker processes, as real
subprocesses on a real database (psycopg only: the supervisor does not care
which adapter its children use)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conformance.fixtures import scalar, wait_until
from conformance.jobs import HangsFirst, SelfResolving, SleepJob
from que_core import plugins, supervisor
from que_core.connection import Connection
from que_core.foreground import EXIT_SECOND_SIGNAL, EXIT_UNFINISHED
from que_core.testing import databases
from tests.helpers import advisory_locks, job_count, log_tags, logged_database
from tests.test_cli_admin import clean_env
from tests.test_cli_work import _Reader
from tests.test_metrics import scrape

ROOT = Path(__file__).resolve().parent.parent
ADAPTER = "psycopg"


@pytest.fixture
def pg(server_dsn: str) -> Iterator[tuple[str, Connection]]:
    """A migrated database of its own with the conformance_log table, and a connection to it."""
    with logged_database(ADAPTER, server_dsn) as db:
        yield db


class Supervised:
    """``que work --processes N ...`` running, its output read as it comes."""

    def __init__(self, dsn: str, *args: str, cwd: Path = ROOT,
                 env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "que_core.cli", "work", "--dsn", dsn, "--adapter", ADAPTER,
             "-i", "0.2", *args],
            cwd=cwd, env=env or clean_env(), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        self.out = _Reader(self.proc)

    @property
    def text(self) -> str:
        return self.out.text

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self.out.thread.join(10)
        if self.proc.stdout:
            self.proc.stdout.close()


@pytest.fixture
def run(pg: tuple[str, Connection]) -> Iterator[Any]:
    started: list[Supervised] = []

    def start(*args: str, **kw: Any) -> Supervised:
        s = Supervised(pg[0], *args, **kw)
        started.append(s)
        return s

    yield start
    for s in started:
        s.close()


def lockers(conn: Connection) -> list[int]:
    """The worker processes registered now (their pids), live sessions only."""
    return sorted(int(r[0]) for r in conn.execute(
        "SELECT ruby_pid FROM que_lockers WHERE pid IN "
        "(SELECT pid FROM pg_stat_activity WHERE datname = current_database())"))


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() if sys.platform.startswith("linux") else True


def registered(conn: Connection, n: int, timeout: float = 30) -> list[int]:
    return wait_until(lambda: (lambda p: p if len(p) == n else None)(lockers(conn)),
                    within=timeout, interval=0.05)


def ran_by(conn: Connection, event: str = "ran") -> dict[str, set[int]]:
    out: dict[str, set[int]] = {}
    for tag, pid in conn.execute("SELECT tag, pid FROM conformance_log WHERE event = %s", (event,)):
        out.setdefault(tag, set()).add(int(pid))
    return out


def hanging(db: Connection, run: Any, *flags: str, workers: str = "1"
            ) -> tuple[Supervised, list[int]]:
    """Two worker processes of *workers* threads each, one of them running a
    job that hangs; the supervisor and its children's pids."""
    sup = run("--processes", "2", "-w", workers, *flags, "conformance.jobs")
    pids = registered(db, 2)
    HangsFirst.enqueue("hang", conn=db.raw)
    wait_until(lambda: log_tags(db, "start") == ["hang"])
    return sup, pids


def test_restart_delays_grow_and_exits_are_described() -> None:
    assert [supervisor.restart_delay(n) for n in range(1, 9)] == [
        0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert supervisor.describe_exit(-signal.SIGKILL) == "was killed by SIGKILL"
    assert supervisor.describe_exit(3) == "exited with status 3 (cannot connect to the database)"
    assert supervisor.describe_exit(77) == "exited with status 77"


def test_children_work_jobs_each_registered_and_sigterm_drains_exit_0(
    pg: tuple[str, Connection], run: Any
) -> None:
    _, db = pg
    sup = run("--processes", "2", "-w", "1", "--batch-size", "1", "conformance.jobs")
    pids = registered(db, 2)
    assert sup.proc.pid not in pids  # the supervisor works no jobs
    for i in range(6):
        SleepJob.enqueue(f"s{i}", 0.3, conn=db.raw)
    wait_until(lambda: len(log_tags(db, "done")) == 6, within=30)
    by = ran_by(db, "done")
    assert all(len(p) == 1 for p in by.values())
    assert set().union(*by.values()) == set(pids)  # both children worked
    SleepJob.enqueue("draining", 1.5, conn=db.raw)
    wait_until(lambda: log_tags(db, "start")[-1:] == ["draining"])
    sup.proc.send_signal(signal.SIGTERM)
    assert sup.proc.wait(30) == 0
    sup.out.thread.join(10)
    assert "received SIGTERM: passing it on to 2 worker process(es)" in sup.text
    assert log_tags(db, "done")[-1] == "draining"  # it finished
    assert job_count(db) == 0
    assert not any(alive(p) for p in pids)
    assert lockers(db) == []
    assert re.search(r"INFO que_core\.worker\[\d+\]: worker stopped", sup.text)


def test_a_killed_child_is_restarted_and_its_jobs_worked_by_others(
    pg: tuple[str, Connection], run: Any
) -> None:
    _, db = pg
    sup, pids = hanging(db, run, workers="2")
    (victim,) = ran_by(db, "start")["hang"]
    assert victim in pids
    for i in range(40):
        SelfResolving.enqueue(f"r{i}", conn=db.raw)
    os.kill(victim, signal.SIGKILL)
    for i in range(40, 80):
        SelfResolving.enqueue(f"r{i}", conn=db.raw)
    wait_until(lambda: re.search(
        rf"worker process {victim} \(#\d\) was killed by SIGKILL after [\d.]+ s; "
        r"starting another in 0\.5 s", sup.text), within=20)
    # Its lock went with its session: another process works the job again.
    wait_until(lambda: log_tags(db, "done") == ["hang"], within=30)
    wait_until(lambda: job_count(db) == 0, within=30)
    by = ran_by(db)
    assert sorted(by) == sorted(f"r{i}" for i in range(80))  # none lost
    assert len(log_tags(db)) == 80  # none ran twice
    assert victim not in ran_by(db, "done")["hang"]
    after = registered(db, 2)
    assert victim not in after and len(set(after) & set(pids)) == 1  # one new child
    sup.proc.send_signal(signal.SIGTERM)
    assert sup.proc.wait(30) == 0
    wait_until(lambda: advisory_locks(db) == 0)


def test_jobs_unfinished_at_the_deadline_exit_5(pg: tuple[str, Connection], run: Any) -> None:
    _, db = pg
    sup, _ = hanging(db, run, "--shutdown-timeout", "0.5")
    sup.proc.send_signal(signal.SIGTERM)
    assert sup.proc.wait(30) == EXIT_UNFINISHED
    sup.out.thread.join(10)
    assert "exiting with status 5: the shutdown deadline passed with jobs unfinished" in sup.text
    assert "exiting with status 5: worker process(es) had jobs unfinished" in sup.text
    assert job_count(db) == 1
    wait_until(lambda: advisory_locks(db) == 0)


def test_a_second_signal_exits_6_at_once(pg: tuple[str, Connection], run: Any) -> None:
    _, db = pg
    sup, pids = hanging(db, run)
    sup.proc.send_signal(signal.SIGINT)
    wait_until(lambda: "received SIGINT: passing it on" in sup.text, within=10)
    time.sleep(0.5)
    assert sup.proc.poll() is None  # the hung job is given its time
    sup.proc.send_signal(signal.SIGINT)
    assert sup.proc.wait(10) == EXIT_SECOND_SIGNAL  # the hung job had 2 minutes to go
    sup.out.thread.join(10)
    assert "received SIGINT again: passing it on and exiting at once with status 6" in sup.text
    assert "received SIGINT again: exiting at once with status 6; 1 running job(s)" in sup.text
    assert not any(alive(p) for p in pids)
    assert job_count(db) == 1  # to be worked again
    wait_until(lambda: advisory_locks(db) == 0)


def test_children_die_with_the_supervisor(pg: tuple[str, Connection], run: Any) -> None:
    _, db = pg
    sup, pids = hanging(db, run)
    sup.proc.kill()
    sup.proc.wait(10)
    wait_until(lambda: not any(alive(p) for p in pids), within=10)
    wait_until(lambda: advisory_locks(db) == 0 and lockers(db) == [], within=10)
    assert job_count(db) == 1


def test_a_child_that_cannot_start_is_restarted_with_growing_delays(
    tmp_path: Path, pg: tuple[str, Connection], run: Any
) -> None:
    _, db = pg
    # Imports fine in the supervisor, fails in its children.
    (tmp_path / "crashy.py").write_text(
        "import sys\n"
        "if '--supervised' in sys.argv:\n"
        "    raise RuntimeError('no luck')\n", encoding="utf-8")
    sup = run("--processes", "2", "crashy", cwd=tmp_path)
    wait_until(lambda: "starting another in 2.0 s (3 quick exits in a row)" in sup.text,
             within=30)
    assert re.search(r"worker process \d+ \(#1\) exited with status 2 \(bad usage or "
                     r"configuration\) after [\d.]+ s; starting another in 0\.5 s", sup.text)
    assert "starting another in 1.0 s (2 quick exits in a row)" in sup.text
    assert "cannot import job module 'crashy': it raised RuntimeError: no luck" in sup.text
    assert lockers(db) == []
    sup.proc.send_signal(signal.SIGTERM)
    assert sup.proc.wait(30) in (0, 1)  # 1 if a child failed as the signal came


def test_one_metrics_endpoint_for_all_children(pg: tuple[str, Connection], run: Any) -> None:
    _, db = pg
    sup = run("--processes", "2", "-w", "1", "--batch-size", "1", "--metrics-port", "0",
              "--metrics-host", "127.0.0.1", "conformance.jobs")
    m = wait_until(lambda: re.search(r"serving Prometheus metrics on http://[^:]+:(\d+)/metrics",
                                   sup.text), within=20)
    port = int(m.group(1))
    pids = registered(db, 2)
    for i in range(6):
        SleepJob.enqueue(f"s{i}", 0.3, conn=db.raw)
    for i in range(3):
        SelfResolving.enqueue(f"waiting-{i}", conn=db.raw, queue="elsewhere")
    wait_until(lambda: len(log_tags(db, "done")) == 6, within=30)
    assert set().union(*ran_by(db, "done").values()) == set(pids)
    sleep = (("job_class", "conformance.jobs.SleepJob"), ("queue", "default"))
    got = wait_until(lambda: (lambda s: s if s.get(("que_jobs_worked_total", sleep)) == 6
                            and s.get(("que_workers", ())) == 2 else None)(scrape(port)),
                   within=10, interval=0.2)
    assert got[("que_job_duration_seconds_count", sleep)] == 6
    assert got[("que_queue_depth", (("queue", "default"),))] == 0
    assert ("que_queue_depth", (("queue", "elsewhere"),)) not in got  # not worked here
    # A child killed: its counts stay, its threads leave the gauge until it is replaced.
    os.kill(pids[0], signal.SIGKILL)
    wait_until(lambda: scrape(port).get(("que_workers", ())) == 1, within=10, interval=0.1)
    registered(db, 2)
    wait_until(lambda: scrape(port).get(("que_workers", ())) == 2, within=20, interval=0.2)
    assert scrape(port)[("que_jobs_worked_total", sleep)] == 6
    sup.proc.send_signal(signal.SIGTERM)
    assert sup.proc.wait(30) == 0
    with pytest.raises(OSError):
        scrape(port)


def test_processes_from_pyproject(tmp_path: Path, pg: tuple[str, Connection], run: Any) -> None:
    _, db = pg
    (tmp_path / "pyproject.toml").write_text(
        "[tool.que]\nprocesses = 2\nworkers = 1\nmodules = ['conformance.jobs']\n",
        encoding="utf-8")
    env = clean_env(PYTHONPATH=str(ROOT))
    sup = run(cwd=tmp_path, env=env)
    pids = registered(db, 2)
    assert scalar(db, "SELECT sum(worker_count) FROM que_lockers") == 2
    SelfResolving.enqueue("x", conn=db.raw)
    wait_until(lambda: log_tags(db) == ["x"], within=20)
    sup.proc.send_signal(signal.SIGTERM)
    assert sup.proc.wait(30) == 0
    assert not any(alive(p) for p in pids)


def test_no_schema_is_said_once_by_the_supervisor(server_dsn: str) -> None:
    adapter = plugins.get_adapter(ADAPTER)
    with databases.temporary_database(adapter, server_dsn) as dsn:
        out = subprocess.run(
            [sys.executable, "-m", "que_core.cli", "work", "--dsn", dsn, "--adapter", ADAPTER,
             "--processes", "2", "conformance.jobs"],
            cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=60)
    assert out.returncode == 4
    assert "que migrate" in out.stderr
    assert "started worker process" not in out.stderr


def test_log_lines_name_their_process() -> None:
    import json
    import logging

    from que_core import logs

    record = logging.LogRecord("que_core.worker", logging.INFO, __file__, 1, "hi", None, None)
    assert json.loads(logs.JsonFormatter(pid=True).format(record))["pid"] == os.getpid()
    assert "pid" not in json.loads(logs.JsonFormatter().format(record))
    text = logs.TextFormatter(logs.TEXT_FORMAT_PID).format(record)
    assert text.endswith(f"INFO que_core.worker[{os.getpid()}]: hi")
