"""Periodic jobs: each tick enqueued once by any number of workers
(que_core_ticks), catch-up, configuration, ``que schedules list``."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from conformance.fixtures import scalar, wait_until
from conformance.jobs import PlainJob
from que_core import Job, Worker
from que_core.connection import Adapter, Connection
from que_core.errors import ConfigurationError
from que_core.schedules import Schedule, Scheduler, from_table, parse_cron
from que_core.settings_file import read_schedules

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAME = "tests.EverySecond"


def _ticks(conn: Connection, name: str) -> list[tuple[Any, ...]]:
    return conn.execute("SELECT tick, job_id FROM que_core_ticks WHERE schedule = %s "
                        "ORDER BY tick", (name,))


def _consecutive(ticks: list[Any], step: timedelta = timedelta(seconds=1)) -> bool:
    return all(b - a == step for a, b in itertools.pairwise(ticks))


def test_three_workers_enqueue_each_tick_once_one_killed(db: Connection, adapter: Adapter,
                                                          dsn: str) -> None:
    procs = [
        subprocess.Popen([sys.executable, "-m", "que_core.cli", "work", "--dsn", dsn,
                          "--adapter", adapter.name, "--workers", "2", "--poll-interval", "0.5",
                          "tests.periodic_jobs"],
                         cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(3)
    ]
    try:
        wait_until(lambda: scalar(db, "SELECT count(*) FROM que_lockers") == 3, within=60)
        first = wait_until(lambda: _ticks(db, NAME), within=30)[0][0]
        time.sleep(4)
        procs[0].send_signal(signal.SIGKILL)  # mid-round, mid-job, wherever it is
        procs[0].wait(10)
        wait_until(lambda: _ticks(db, NAME)[-1][0] - first >= timedelta(seconds=10), within=30)
        for p in procs[1:]:
            assert p.poll() is None
        # Every job enqueued is worked before the others stop.
        wait_until(lambda: scalar(db, "SELECT count(*) FROM que_jobs WHERE job_class = %s",
                                NAME) == 0, within=30)
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(30)
    rows = _ticks(db, NAME)
    ticks, job_ids = [r[0] for r in rows], [r[1] for r in rows]
    assert len(ticks) >= 11 and _consecutive(ticks), ticks  # no tick missed while one ran
    ran = db.execute("SELECT DISTINCT job_id FROM conformance_log WHERE event = 'ran'")
    # One job per tick, and no job that is not a tick's (a job may have run
    # twice, if the killed worker was running it: at least once).
    assert sorted(r[0] for r in ran) == sorted(job_ids)
    assert len(set(job_ids)) == len(job_ids)


def _run_one_round(adapter: Adapter, dsn: str, schedules: list[Schedule],
                   rounds: int = 1) -> Scheduler:
    s = Scheduler(lambda: adapter.connect(dsn), schedules, threading.Event())
    try:
        for i in range(rounds):
            if i:
                time.sleep(s._round())
            else:
                s._round()
    finally:
        s._close()
    return s


def test_catch_up_off_and_on(conn: Connection, adapter: Adapter, dsn: str) -> None:
    # The latest ticks recorded, 10 s ago: the workers were down since.
    conn.execute("INSERT INTO que_core_ticks (schedule, tick) "
                 "SELECT s, date_trunc('second', now()) - interval '10 seconds' "
                 "FROM unnest(ARRAY['off', 'on', 'big']) AS s")
    off = Schedule("off", "* * * * * *", PlainJob.job_name, ("off",))
    on = Schedule("on", "* * * * * *", PlainJob.job_name, ("on",), catch_up=3)
    big = Schedule("big", "* * * * * *", PlainJob.job_name, ("big",), catch_up=100)
    new = Schedule("new", "* * * * * *", PlainJob.job_name, ("new",), catch_up=5)
    s = _run_one_round(adapter, dsn, [off, on, big, new])
    assert s.started_at is not None
    started = s.started_at

    def late(name: str) -> list[Any]:
        return [t for t, _ in _ticks(conn, name)[1 if name != "new" else 0:] if t < started]

    assert late("off") == []  # missed, and not enqueued late
    assert late("new") == []  # no history: nothing was missed
    caught = late("on")
    assert len(caught) == 3 and _consecutive(caught)  # the latest 3 missed ones
    assert started - caught[-1] < timedelta(seconds=1)
    recorded = _ticks(conn, "big")[0][0]
    missed = [recorded + timedelta(seconds=k) for k in range(1, 100)
              if recorded + timedelta(seconds=k) < started]
    assert 9 <= len(missed) <= 99  # 10 s, and however long the scheduler took to start
    assert late("big") == missed  # all of them (fewer than its bound)
    assert caught == missed[-3:]
    # Each tick has its job, with the schedule's arguments.
    jobs = conn.execute("SELECT args::text, count(*) FROM que_jobs GROUP BY 1 ORDER BY 1")
    counts = {json.loads(a)[0]: n for a, n in jobs}
    for name in ("off", "on", "big", "new"):
        recorded = scalar(conn, "SELECT count(job_id) FROM que_core_ticks WHERE schedule = %s",
                          name)
        assert counts.get(name, 0) == recorded


def test_a_tick_is_enqueued_once_by_concurrent_schedulers(conn: Connection, adapter: Adapter,
                                                         dsn: str) -> None:
    every = Schedule("every", "* * * * * *", PlainJob.job_name, ("x",))
    stop = threading.Event()
    schedulers = [Scheduler(lambda: adapter.connect(dsn), [every], stop) for _ in range(4)]
    for s in schedulers:
        s.start()
    time.sleep(3.2)
    stop.set()
    for s in schedulers:
        s.join(10)
    rows = _ticks(conn, "every")
    assert len(rows) >= 2 and _consecutive([r[0] for r in rows])
    assert sum(s.enqueued for s in schedulers) == len(rows)
    assert scalar(conn, "SELECT count(*) FROM que_jobs") == len(rows)


def test_a_worker_runs_the_schedules_it_is_given(db: Connection, que_worker: Any) -> None:
    w: Worker = que_worker(worker_count=1, schedules=[
        Schedule("w", "* * * * * *", PlainJob.job_name, ("periodic",))])
    assert w.scheduler is not None
    logged = "SELECT count(*) FROM conformance_log WHERE tag = 'periodic'"
    wait_until(lambda: scalar(db, logged) >= 2)
    w.stop(5)
    assert not w.scheduler.is_alive()


def test_bad_schedules_are_refused_naming_the_value(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"'\* \* \*' has 3 fields"):
        parse_cron("* * *", "here")
    with pytest.raises(ConfigurationError, match="bad cron expression '61 \\* \\* \\* \\*'"):
        parse_cron("61 * * * *", "here")
    assert parse_cron("*/10 * * * * *", "here")  # six fields: seconds first
    with pytest.raises(ConfigurationError, match=r"Nightly\.schedule: bad cron expression"):
        type("Nightly", (Job,), {"schedule": "0 25 * * *", "__module__": "tests.x"},
             register=False)
    with pytest.raises(ConfigurationError, match="catch_up -1"):
        Schedule("x", "* * * * *", "J", catch_up=-1)
    with pytest.raises(ConfigurationError, match=r"unknown key.*crontab"):
        from_table({"a": {"job": "J", "crontab": "* * * * *"}}, "there")
    with pytest.raises(ConfigurationError, match="cron is missing"):
        from_table({"a": {"job": "J"}}, "there")
    with pytest.raises(ConfigurationError, match="names job 'Nope'"):
        Scheduler(lambda: None, [Schedule("a", "* * * * *", "Nope")],  # type: ignore
                  threading.Event())
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(
        '[tool.que.schedules.nightly]\njob = "conformance.jobs.PlainJob"\ncron = "0 3 * * *"\n'
        'args = ["nightly"]\ncatch_up = 1\n')
    assert read_schedules(pyproject) == [
        Schedule("nightly", "0 3 * * *", "conformance.jobs.PlainJob", ("nightly",), {}, 1)]


def test_que_schedules_list(conn: Connection, adapter: Adapter, dsn: str,
                            tmp_path: Path) -> None:
    s = Schedule("listed", "* * * * * *", PlainJob.job_name, ("x",))
    _run_one_round(adapter, dsn, [s], rounds=3)  # a tick, at least
    (tmp_path / "pyproject.toml").write_text(
        '[tool.que.schedules.listed]\njob = "conformance.jobs.PlainJob"\ncron = "* * * * * *"\n'
        'args = ["x"]\n'
        '[tool.que.schedules.never]\njob = "conformance.jobs.PlainJob"\ncron = "0 3 * * *"\n')
    env = {**os.environ, "PYTHONPATH": ROOT}
    out = subprocess.run(
        [sys.executable, "-m", "que_core.cli", "schedules", "list", "--dsn", dsn,
         "--adapter", adapter.name, "--json", "conformance.jobs"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    listed = {r["name"]: r for r in json.loads(out.stdout)}
    last = _ticks(conn, "listed")[-1]
    assert listed["listed"]["last_job_id"] == last[1]
    assert listed["listed"]["last_job_state"] == "ready"
    assert listed["listed"]["last_tick"].startswith(last[0].strftime("%Y-%m-%dT%H:%M:%S"))
    assert listed["never"]["last_tick"] is None
    assert listed["never"]["next_tick"].endswith("T03:00:00Z")
    text = subprocess.run(
        [sys.executable, "-m", "que_core.cli", "schedules", "list", "--dsn", dsn,
         "--adapter", adapter.name, "conformance.jobs"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert text.returncode == 0, text.stderr
    assert "listed" in text.stdout and f"{last[1]} (ready)" in text.stdout


def test_a_unique_periodic_job_waiting_still_counts_the_tick(conn: Connection, adapter: Adapter,
                                                             dsn: str) -> None:
    from conformance.jobs import UniqueJob

    waiting = UniqueJob.enqueue(5, conn=conn.raw)
    s = Schedule("u", "* * * * * *", UniqueJob.job_name, (5,))
    _run_one_round(adapter, dsn, [s], rounds=3)
    rows = _ticks(conn, "u")
    assert rows  # the ticks are recorded ...
    assert conn.execute("SELECT id FROM que_jobs") == [(waiting.id,)]  # ... with no duplicate


def test_five_and_six_field_ticks() -> None:
    from datetime import datetime, timezone

    t = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
    assert Schedule("a", "30 * * * * *", "J").ticks(t, t + timedelta(minutes=2)) == [
        t + timedelta(seconds=30), t + timedelta(seconds=90)]
    assert Schedule("b", "*/30 * * * *", "J").ticks(t, t + timedelta(hours=1)) == [
        t + timedelta(minutes=30), t + timedelta(hours=1)]
    assert Schedule("c", "*/30 * * * *", "J").next_tick(t) == t + timedelta(minutes=30)
