"""Job control across processes, through the `que` command: `que work`
workers as subprocesses, `que jobs cancel`, `que queues pause/resume/list`,
`que jobs prune`, `que work --max-run-time` and `--retain-*`."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from conformance.fixtures import scalar, wait_until
from que_core.connection import Adapter, Connection
from tests.ctljobs import Quick, Spin
from tests.helpers import advisory_locks, log_tags, que_work_processes
from tests.test_cli_admin import clean_env, que


@pytest.fixture
def workers(dsn: str, adapter: Adapter) -> Iterator[Any]:
    """Start `que work tests.ctljobs` subprocesses; ended at teardown."""
    with que_work_processes(dsn, adapter.name, ("tests.ctljobs",), interval="30",
                            env=clean_env(), quiet=True, graceful=True) as start:
        yield start


def _registered(db: Connection, count: int) -> None:
    wait_until(lambda: scalar(db, "SELECT count(*) FROM que_lockers WHERE listening") == count,
             within=30)


def _base(dsn: str, adapter: Adapter) -> tuple[str, ...]:
    return ("--dsn", dsn, "--adapter", adapter.name)


def test_cancel_from_another_process(db: Connection, dsn: str, adapter: Adapter,
                                     workers: Any) -> None:
    workers("-w", "1")
    _registered(db, 1)
    job = Spin.enqueue("spin", conn=db.raw)
    waiting = Quick.enqueue("waiting", conn=db.raw, queue="elsewhere")
    wait_until(lambda: log_tags(db, "start") == ["spin"])
    out = que("jobs", "cancel", str(job.id), str(waiting.id), "--reason", "ops",
              *_base(dsn, adapter))
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        f"cancelled job {job.id}: it was running, and its worker stopped it",
        f"cancelled job {waiting.id}: it was waiting and will never run"]
    wait_until(lambda: advisory_locks(db) == 0)
    assert log_tags(db, "ran") == []
    again = que("jobs", "cancel", str(job.id), str(job.id + 100), "--json", *_base(dsn, adapter))
    assert again.returncode == 0
    assert [r["result"] for r in json.loads(again.stdout)] == ["already_cancelled", "missing"]
    listed = que("jobs", "list", "--state", "cancelled", "--json", *_base(dsn, adapter))
    assert sorted(j["id"] for j in json.loads(listed.stdout)) == [job.id, waiting.id]


def test_max_run_time_flag(db: Connection, dsn: str, adapter: Adapter, workers: Any) -> None:
    workers("-w", "1", "--max-run-time", "0.5")
    _registered(db, 1)
    job = Spin.enqueue("spin", conn=db.raw)
    wait_until(lambda: scalar(db, "SELECT error_count FROM que_jobs WHERE id = %s", job.id) == 1,
             within=10)
    assert scalar(db, "SELECT last_error_message FROM que_jobs WHERE id = %s", job.id) \
        == "JobTimedOut: timed out after 0.5 seconds"


def test_pause_and_resume_seen_by_two_worker_processes(db: Connection, dsn: str,
                                                       adapter: Adapter, workers: Any) -> None:
    workers("-w", "1", "-q", "a", "-q", "b")
    workers("-w", "1", "-q", "a", "-q", "b")
    _registered(db, 2)
    out = que("queues", "pause", "a", "--reason", "incident", *_base(dsn, adapter))
    assert out.returncode == 0 and out.stdout.startswith("paused queue a:"), out
    twice = que("queues", "pause", "a", *_base(dsn, adapter))
    assert "queue a is paused already (since " in twice.stdout
    # Sleepers, so that both processes get some once it is resumed.
    for i in range(6):
        Spin.enqueue(f"a{i}", seconds=0.3, conn=db.raw, queue="a")
    Quick.enqueue("b", conn=db.raw, queue="b")
    wait_until(lambda: log_tags(db) == ["b"])
    time.sleep(1.5)
    assert log_tags(db, "start") == []
    listed = json.loads(que("queues", "list", "--json", *_base(dsn, adapter)).stdout)
    a = next(q for q in listed if q["queue"] == "a")
    assert (a["paused"], a["reason"], a["ready"]) == (True, "incident", 6)
    text = que("queues", "list", *_base(dsn, adapter)).stdout
    assert text.splitlines()[0].split()[:4] == ["QUEUE", "STATE", "PAUSED", "AT"]
    assert que("queues", "resume", "a", *_base(dsn, adapter)).stdout == "resumed queue a\n"
    start = time.monotonic()  # once the command (and its NOTIFY) is done
    wait_until(lambda: len(log_tags(db, "start")) >= 1, within=5)
    assert time.monotonic() - start < 1.0  # not their 30 s poll
    wait_until(lambda: len(log_tags(db, "ran")) == 7, within=20)  # b and the six of a
    pids = {r[0] for r in db.execute("SELECT DISTINCT pid FROM conformance_log WHERE event = 'ran' "
                                     "AND tag LIKE 'a%%'")}
    assert len(pids) == 2  # both worker processes took the resumed queue's jobs
    assert que("queues", "resume", "a", *_base(dsn, adapter)).stdout \
        == "queue a is not paused: nothing to do\n"


def test_prune_command(db: Connection, dsn: str, adapter: Adapter) -> None:
    ids = [Quick.enqueue(i, conn=db.raw).id for i in range(6)]
    db.execute("UPDATE que_jobs SET finished_at = now() - interval '8 days' WHERE id = ANY(%s)",
               (ids[:2],))
    db.execute("UPDATE que_jobs SET expired_at = now() - interval '8 days' WHERE id = ANY(%s)",
               (ids[2:4],))
    db.execute("UPDATE que_jobs SET finished_at = now() - interval '6 days' WHERE id = %s",
               (ids[4],))
    out = que("jobs", "prune", "--older-than", "7d", *_base(dsn, adapter))
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("deleted 2 finished and 2 expired or cancelled job(s) older "
                                 "than 1w in ")
    assert sorted(r[0] for r in db.execute("SELECT id FROM que_jobs")) == ids[4:]
    bad = que("jobs", "prune", "--older-than", "soon", *_base(dsn, adapter))
    assert bad.returncode == 2 and "'soon' is not an age" in bad.stderr
