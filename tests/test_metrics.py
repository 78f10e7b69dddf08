"""The Prometheus plugin: in process through the hooks, and `que work
--metrics-port` scraped over HTTP during a run."""

from __future__ import annotations

import os
import re
import socket
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from conformance.fixtures import wait_until
from conformance.jobs import FailingTwice, SelfResolving, SleepJob
from que_core.connection import Adapter, Connection
from que_core.contrib import prometheus
from tests.helpers import QueWork, log_tags
from tests.test_cli_admin import ROOT, clean_env, que


@pytest.fixture
def metrics() -> Iterator[prometheus.PrometheusMetrics]:
    m = prometheus.install(CollectorRegistry(), depth_interval=0)
    yield m
    prometheus.uninstall(m)


def test_hooks_record_jobs_and_workers(
    db: Connection, que_worker: Any, metrics: prometheus.PrometheusMetrics
) -> None:
    reg = metrics.registry

    def value(name: str, **labels: str) -> float | None:
        return reg.get_sample_value(name, labels)

    SelfResolving.enqueue("a", conn=db.raw)
    SelfResolving.enqueue("b", conn=db.raw)
    FailingTwice.enqueue("f", conn=db.raw)  # fails 3 times: errored, errored, expired
    SelfResolving.enqueue("idle-1", conn=db.raw, queue="idle")
    SelfResolving.enqueue("idle-2", conn=db.raw, queue="idle")
    worker = que_worker(worker_count=2)
    wait_until(lambda: len(log_tags(db)) == 5, within=20)  # 2 records + 3 failing runs
    wait_until(lambda: value("que_jobs_expired_total", job_class="conformance.jobs.FailingTwice",
                           queue="default") == 1)
    labels = {"job_class": "conformance.jobs.SelfResolving", "queue": "default"}
    failing = {"job_class": "conformance.jobs.FailingTwice", "queue": "default"}
    assert value("que_jobs_worked_total", **labels) == 2
    assert value("que_jobs_errored_total", **failing) == 3
    assert value("que_jobs_worked_total", **failing) is None
    assert value("que_job_duration_seconds_count", **labels) == 2
    assert value("que_job_duration_seconds_count", **failing) == 3
    assert value("que_workers") == 2
    assert value("que_queue_depth", queue="default") == 0  # worked, nothing waiting
    assert value("que_queue_depth", queue="idle") is None  # not worked here: not labelled
    assert value("que_queue_latency_seconds", queue="default") == 0

    SleepJob.enqueue("busy", 1.5, conn=db.raw)
    wait_until(lambda: log_tags(db, "start") == ["busy"])
    assert value("que_workers_busy") == 1
    wait_until(lambda: log_tags(db, "done") == ["busy"])
    wait_until(lambda: value("que_workers_busy") == 0)
    worker.stop(timeout=10)
    assert value("que_workers") == 0  # a stopped worker is forgotten


def test_queue_depth_is_cached_between_scrapes(
    db: Connection, dsn: str, adapter: Adapter
) -> None:
    m = prometheus.PrometheusMetrics(CollectorRegistry(), connect=lambda: adapter.connect(dsn),
                                     depth_interval=3600, queues=["default"])
    try:
        SelfResolving.enqueue("x", conn=db.raw)
        assert m.registry.get_sample_value("que_queue_depth", {"queue": "default"}) == 1
        SelfResolving.enqueue("y", conn=db.raw)
        assert m.registry.get_sample_value("que_queue_depth", {"queue": "default"}) == 1
        m.depth_interval = 0
        assert m.registry.get_sample_value("que_queue_depth", {"queue": "default"}) == 2
        latency = m.registry.get_sample_value("que_queue_latency_seconds", {"queue": "default"})
        assert latency is not None and latency > 0
    finally:
        m.close()


@pytest.mark.per_adapter
def test_queue_depth_survives_a_database_that_went_away(adapter: Adapter) -> None:
    def connect() -> Connection:
        return adapter.connect("postgresql://postgres:pw@127.0.0.1:1/x?connect_timeout=2")

    m = prometheus.PrometheusMetrics(CollectorRegistry(), connect=connect, depth_interval=0,
                                     queues=["default"])
    try:
        names = {f.name for f in m.registry.collect()}
        assert "que_queue_depth" not in names
        assert "que_workers" in names
    finally:
        m.close()


# -- que work --metrics-port ---------------------------------------------------------


class Run(QueWork):
    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        super().__init__(*args, env=env or clean_env())

    def port(self) -> int:
        def found() -> int | None:
            for line in list(self.lines):
                m = re.search(r"serving Prometheus metrics on http://[^:]+:(\d+)/metrics", line)
                if m:
                    return int(m.group(1))
            return None

        return int(wait_until(found, within=20))


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        assert resp.status == 200
        text = resp.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_metrics_endpoint_during_a_run(db: Connection, dsn: str, adapter: Adapter) -> None:
    # Three threads that take priorities up to 150: the backlog's jobs (200) wait.
    run = Run("--dsn", dsn, "--adapter", adapter.name, "-i", "0.2", "-p", "150,150,150",
              "-q", "default", "-q", "backlog",
              "--metrics-port", "0", "--metrics-host", "127.0.0.1", "conformance.jobs")
    try:
        port = run.port()
        for i in range(4):
            SelfResolving.enqueue(i, conn=db.raw)
        FailingTwice.enqueue("f", conn=db.raw)
        for i in range(3):
            SelfResolving.enqueue(f"waiting-{i}", conn=db.raw, queue="backlog", priority=200)
        SleepJob.enqueue("busy", 3, conn=db.raw)
        wait_until(lambda: log_tags(db, "start") == ["busy"], within=20)
        assert scrape(port)[("que_workers_busy", ())] >= 1  # the sleeping job, at least
        rec = (("job_class", "conformance.jobs.SelfResolving"), ("queue", "default"))
        fail = (("job_class", "conformance.jobs.FailingTwice"), ("queue", "default"))

        def settled() -> dict[Any, float] | None:
            m = scrape(port)
            ok = (m.get(("que_jobs_worked_total", rec)) == 4
                  and m.get(("que_jobs_expired_total", fail)) == 1)
            return m if ok else None

        m = wait_until(settled, within=30, interval=0.2)
        assert m[("que_jobs_errored_total", fail)] == 3
        assert m[("que_job_duration_seconds_count", rec)] == 4
        assert m[("que_job_duration_seconds_bucket", tuple(sorted((*rec, ("le", "+Inf")))))] == 4
        assert m[("que_workers", ())] == 3
        assert m[("que_queue_depth", (("queue", "backlog"),))] == 3
        assert m[("que_queue_latency_seconds", (("queue", "backlog"),))] >= 0
        assert ("process_cpu_seconds_total", ()) in m  # the default registry's collectors
        wait_until(lambda: log_tags(db, "done") == ["busy"], within=20)
        wait_until(lambda: scrape(port)[("que_workers_busy", ())] == 0, within=10)
    finally:
        assert run.stop() == 0
    with pytest.raises(OSError):  # the server went with the worker
        scrape(port)


def test_metrics_port_from_the_environment(db: Connection, dsn: str, adapter: Adapter) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = int(s.getsockname()[1])
    env = clean_env(DATABASE_URL=dsn, QUE_METRICS_PORT=str(free), QUE_ADAPTER=adapter.name)
    run = Run("conformance.jobs", env=env)
    try:
        assert run.port() == free
        assert ("que_workers", ()) in scrape(free)
    finally:
        assert run.stop() == 0


def test_metrics_port_in_use_exits_with_a_message(dsn: str, adapter: Adapter) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        out = que("work", "--dsn", dsn, "--adapter", adapter.name, "--metrics-port", str(port),
                  "--metrics-host", "127.0.0.1", "conformance.jobs")
    assert out.returncode == 1
    assert f"cannot serve metrics on 127.0.0.1:{port}" in out.stderr


def test_metrics_without_prometheus_client_says_what_to_install(
    tmp_path: Path, dsn: str
) -> None:
    fake = tmp_path / "prometheus_client"
    fake.mkdir()
    (fake / "__init__.py").write_text("raise ImportError('No module named prometheus_client')\n")
    env = clean_env(PYTHONPATH=os.pathsep.join([str(tmp_path), str(ROOT)]))
    out = que("work", "--dsn", dsn, "--metrics-port", "0", "conformance.jobs", env=env)
    assert out.returncode == 2
    assert "pip install prometheus-client" in out.stderr
    # Without --metrics-port nothing needs it.
    assert que("config", env=env).returncode == 0
