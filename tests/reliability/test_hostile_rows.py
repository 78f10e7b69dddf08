"""Hostile rows and neighbours that share the database (issue 16, items 1, 7,
8 and 9's notification flood): another program that can write to que_jobs,
que_lockers or NOTIFY must not stop the queue, slow it, or blow up the
metrics. Each case reproduces the attack and checks the queue goes on."""

from __future__ import annotations

import logging
import time
from datetime import datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conformance.fixtures import scalar, wait_until
from que_core import Job, admin
from que_core.connection import Adapter, Connection
from tests.reliability import harness
from tests.reliability.harness import scaled
from tests.reliability.rjobs import ECHOED

# Timestamps no Python datetime holds: before year 1, after 9999, infinite.
HOSTILE_TIMESTAMPS = [
    "-infinity",
    "infinity",
    "4713-01-01 00:00:00+00 BC",
    "0001-01-01 00:00:00+14",
    "0001-01-01 00:00:00+00",
    "10000-01-01 00:00:00+00",
    "294276-12-31 23:59:59+00",
]
PAST = [t for t in HOSTILE_TIMESTAMPS if t not in ("infinity", "10000-01-01 00:00:00+00",
                                                   "294276-12-31 23:59:59+00")]


def insert_raw(conn: Connection, run_at: str, *, job_class: str = "rel.Echo",
               queue: str = "default", error_count: int = 0, args: str = '["bomb"]') -> int:
    ((job_id,),) = conn.execute(
        "INSERT INTO que_jobs (job_class, args, job_schema_version, run_at, queue, error_count) "
        "VALUES (%s, %s::jsonb, 2, %s::timestamptz, %s, %s) RETURNING id",
        (job_class, args, run_at, queue, error_count),
    )
    return int(job_id)


def ordinary(conn: Connection) -> int:
    return insert_raw(conn, datetime.now().astimezone().isoformat(), args='["ordinary"]')


@pytest.mark.per_adapter
@pytest.mark.parametrize("run_at", PAST)
def test_a_row_the_driver_cannot_load_does_not_stop_the_queue(
    rel: Connection, workers: Any, run_at: str
) -> None:
    bomb = insert_raw(rel, run_at)
    plain = ordinary(rel)
    w = workers()
    wait_until(lambda: plain in ECHOED and bomb in ECHOED, 10, what="both jobs ran")
    assert w.running, "the locker died"
    assert ECHOED[bomb]["args"] == ["bomb"]
    wait_until(lambda: scalar(rel, "SELECT count(*) FROM que_jobs") == 0, 10,
                     what="both destroyed themselves")


@pytest.mark.per_adapter
@pytest.mark.parametrize("run_at", HOSTILE_TIMESTAMPS)
def test_stats_and_job_lists_survive_hostile_timestamps(rel: Connection, run_at: str) -> None:
    job_id = insert_raw(rel, run_at, queue="elsewhere")
    ordinary(rel)
    stats = admin.stats(rel)
    rows = {(r.queue, r.job_class): r for r in stats.rows}
    row = rows[("elsewhere", "rel.Echo")]
    assert row.ready + row.scheduled == 1
    assert row.oldest_ready_age is None or row.oldest_ready_age >= 0
    listed = {j["id"]: j for j in admin.list_jobs(rel, admin.JobFilter(), limit=10)}
    assert listed[job_id]["run_at"], "a hostile run_at is shown, not blanked"
    shown = admin.get_job(rel, job_id)
    assert shown is not None and shown["run_at"] == listed[job_id]["run_at"]


@settings(max_examples=scaled(20, 200), deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@pytest.mark.per_adapter
@given(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)))
def test_ordinary_timestamps_are_shown_as_stored(rel: Connection, when: datetime) -> None:
    job_id = insert_raw(rel, when.isoformat() + "+00")
    job = admin.get_job(rel, job_id)
    assert job is not None and job["run_at"] == when.isoformat(timespec="microseconds") + "Z"
    rel.execute("DELETE FROM que_jobs WHERE id = %s", (job_id,))


def test_an_error_count_at_the_integer_limit_is_recorded_not_looped(
    rel: Connection, workers: Any
) -> None:
    job_id = insert_raw(rel, "now", job_class="rel.NoSuchClass", error_count=2147483647)
    plain = ordinary(rel)
    w = workers()
    wait_until(lambda: plain in ECHOED, 10, what="the ordinary job ran")
    wait_until(
        lambda: scalar(rel, "SELECT expired_at IS NOT NULL FROM que_jobs WHERE id = %s",
                               job_id), 10, what="the job expired")
    ((count, message),) = rel.execute(
        "SELECT error_count, last_error_message FROM que_jobs WHERE id = %s", (job_id,))
    assert count == 2147483647
    assert "rel.NoSuchClass" in message
    assert w.running


class Unsaveable(Job):
    """Fails; its error cannot be written (a trigger refuses the UPDATE)."""

    job_name = "rel.Unsaveable"
    runs: list[float] = []

    def run(self) -> None:
        Unsaveable.runs.append(time.monotonic())
        raise RuntimeError("this error cannot be saved")


def test_a_job_whose_outcome_cannot_be_written_is_set_aside_not_looped(
    rel: Connection, workers: Any, caplog: pytest.LogCaptureFixture
) -> None:
    rel.execute("""
        CREATE FUNCTION refuse_update() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          IF NEW.job_class = 'rel.Unsaveable' THEN RAISE EXCEPTION 'no updates here'; END IF;
          RETURN NEW;
        END $$;
        CREATE TRIGGER refuse_update BEFORE UPDATE ON que_jobs
          FOR EACH ROW EXECUTE FUNCTION refuse_update();
    """)
    Unsaveable.runs.clear()
    job_id = insert_raw(rel, "now", job_class="rel.Unsaveable", args="[]")
    caplog.set_level(logging.WARNING, logger="que_core")
    w = workers(poll_interval=0.05)
    wait_until(lambda: Unsaveable.runs, 10, what="the job ran")
    plain = ordinary(rel)
    wait_until(lambda: plain in ECHOED, 10, what="the ordinary job ran")
    time.sleep(1.5)
    assert w.running
    assert len(Unsaveable.runs) <= 2, f"ran {len(Unsaveable.runs)} times in 1.5 s: a loop"
    text = caplog.text
    assert f"job {job_id}" in text and "set aside" in text
    assert "outcome=expired" not in text  # nothing was written: no claim that it expired
    assert scalar(rel, "SELECT count(*) FROM que_jobs WHERE id = %s", job_id) == 1


def checkpointer_pid(conn: Connection) -> int:
    return int(scalar(
        conn, "SELECT pid FROM pg_stat_activity WHERE backend_type = 'checkpointer'"))


def fake_locker(conn: Connection, pid: int, workers: int = 1_000_000) -> None:
    conn.execute(
        "INSERT INTO que_lockers VALUES (%s, %s, '{1}', 1, 'fake', ARRAY['default'], true, 2)",
        (pid, workers),
    )


def test_a_fake_locker_row_neither_slows_enqueue_nor_swallows_notifications(
    rel: Connection, workers: Any
) -> None:
    fake_locker(rel, checkpointer_pid(rel))
    w = workers(poll_interval=30)  # no poll during the test: only a NOTIFY brings a job
    assert scalar(rel, "SELECT count(*) FROM que_lockers WHERE ruby_hostname = 'fake'") \
        == 0, "the start-up cleanup removes a row whose pid is not a client backend"
    fake_locker(rel, checkpointer_pid(rel))  # and again, now that the worker runs
    started = time.monotonic()
    ids = [ordinary(rel) for _ in range(20)]
    took = time.monotonic() - started
    wait_until(lambda: all(i in ECHOED for i in ids), 5,
                     what="every job arrived by NOTIFY")
    assert took < 2, f"20 enqueues took {took:.1f} s"
    assert w.running


def test_a_real_session_registered_with_a_huge_worker_count_is_bounded(
    adapter: Adapter, dsn: str, rel: Connection, workers: Any
) -> None:
    other = adapter.connect(dsn)
    try:
        fake_locker(rel, harness.backend_pid(other))  # a live client backend of this database
        started = time.monotonic()
        for _ in range(20):
            ordinary(rel)
        assert time.monotonic() - started < 2
    finally:
        other.close()


# -- metrics: bounded, and on loopback unless told otherwise ---------------------------


def listening_addresses(port: int) -> set[str]:
    """The local addresses a TCP socket listens on for *port* (Linux /proc)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table, encoding="ascii") as f:
                lines = f.read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            address, _, hex_port = local.partition(":")
            if state == "0A" and int(hex_port, 16) == port:  # LISTEN
                found.add(address)
    return found


def test_the_metrics_server_binds_loopback_by_default(adapter: Adapter, dsn: str) -> None:
    from tests.test_metrics import Run

    run = Run("--dsn", dsn, "--adapter", adapter.name, "--metrics-port", "0", "conformance.jobs")
    try:
        port = run.port()
        assert listening_addresses(port) == {"0100007F"}  # 127.0.0.1, and nothing else
    finally:
        assert run.stop() == 0


def test_metrics_label_only_registered_classes_and_worked_queues(
    rel: Connection, workers: Any
) -> None:
    from prometheus_client import CollectorRegistry

    from que_core.contrib import prometheus

    rows = scaled(300, 2000)
    rel.execute(
        "INSERT INTO que_jobs (job_class, args, job_schema_version, queue) "
        "SELECT 'rel.Unknown' || md5(random()::text), '[]', 2, "
        "       CASE WHEN mod(i, 2) = 0 THEN 'default' ELSE 'q' || md5(random()::text) END "
        "FROM generate_series(1, %s) AS i", (rows,))
    metrics = prometheus.install(CollectorRegistry(), depth_interval=0)
    try:
        w = workers(worker_count=4, poll_interval=0.05)
        wait_until(lambda: scalar(
            rel, "SELECT count(*) FROM que_jobs WHERE queue = 'default' AND error_count = 0")
            == 0, 60, what="every job of the default queue failed")
        families = {f.name: f for f in metrics.registry.collect()}
        errored = {s.labels["job_class"] for s in families["que_jobs_errored"].samples}
        assert errored == {prometheus.UNREGISTERED}
        assert {s.labels["queue"] for s in families["que_queue_depth"].samples} == {"default"}
        histogram = [s for s in families["que_job_duration_seconds"].samples]
        assert len(histogram) < 40, f"{len(histogram)} histogram lines"
        assert w.running
    finally:
        prometheus.uninstall(metrics)


def test_a_flood_of_junk_notifications_gives_few_warnings_and_no_lost_job(
    adapter: Adapter, dsn: str, rel: Connection, workers: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from que_core import listener

    listener._unexpected = listener._Throttled()  # a fresh count for this test
    caplog.set_level(logging.WARNING, logger="que_core.listener")
    w = workers(poll_interval=30)
    wait_until(lambda: scalar(rel, "SELECT bool_and(listening) FROM que_lockers"),
                     10, what="the worker listens")
    pid = w.listener.pid
    flood = scaled(5000, 50000)
    rel.execute(
        "SELECT count(pg_notify('que_listener_' || %s::text, 'junk ' || i)) "
        "FROM generate_series(1, %s) AS i", (pid, flood))
    plain = ordinary(rel)
    wait_until(lambda: plain in ECHOED, 10, what="a job arrived by NOTIFY after the flood")

    def warnings() -> list[logging.LogRecord]:
        return [r for r in caplog.records if "unexpected notification" in r.getMessage()]

    # The job may be worked before the listener has read through the junk.
    wait_until(lambda: warnings(), 20, what="the first warning")
    time.sleep(1)
    assert 1 <= len(warnings()) <= 3, f"{len(warnings())} warnings for {flood} junk notifications"
