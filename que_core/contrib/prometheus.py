"""Prometheus metrics for que-core workers, as a plugin of the lifecycle hooks.

Needs prometheus-client (que-core's ``metrics`` extra): ``pip install prometheus-client``.

From the command line, ``que work --metrics-port 9394`` installs it and
serves ``http://<host>:9394/metrics``. In your own process::

    from que_core.contrib import prometheus
    metrics = prometheus.install()        # registers with que-core's hooks
    metrics.serve(9394)                   # or expose prometheus_client.REGISTRY yourself

Metrics (labels in braces):

``que_jobs_worked_total{job_class,queue}``
    jobs whose ``run`` returned.
``que_jobs_errored_total{job_class,queue}``
    jobs whose ``run`` raised (the final error of an expiring job included).
``que_jobs_expired_total{job_class,queue}``
    jobs expired after their last retry.
``que_job_duration_seconds{job_class,queue}``
    histogram of ``run``'s duration, whatever the outcome.
``que_workers_busy`` / ``que_workers``
    worker threads of this process running a job now / in all.
``que_queue_depth{queue}``
    jobs that could run now (run_at passed, neither finished nor expired,
    retries included) and no worker holds.
``que_queue_latency_seconds{queue}``
    age of the oldest of those jobs.

Job metrics cost no database work. The two queue gauges come from one
query per scrape, at most once every ``depth_interval`` seconds (cached in
between), on a connection of their own.

Labels stay bounded whatever the database holds: ``job_class`` is a class
registered in this process (any other name another program wrote is
counted as ``(unregistered)``), and ``queue`` one of the queues this
process's workers work.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

try:
    import prometheus_client
    from prometheus_client.core import GaugeMetricFamily
    from prometheus_client.registry import Collector, CollectorRegistry
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "que_core.contrib.prometheus needs prometheus-client (que-core's metrics extra): "
        "pip install prometheus-client"
    ) from exc

from que_core.connection import Connection
from que_core.errors import QueError
from que_core.hookspecs import hookimpl
from que_core.sql import q

log = logging.getLogger("que_core.metrics")

#: The job_class label of jobs whose class this process has not registered.
UNREGISTERED = "(unregistered)"

DURATION_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
    300.0, 600.0, float("inf"),
)


class _QueueCollector(Collector):
    """Queue depth and latency (one cached query), busy and total worker threads."""

    def __init__(self, metrics: PrometheusMetrics) -> None:
        self.metrics = metrics

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield from self._families()

    def _families(self) -> tuple[GaugeMetricFamily, ...]:
        return (
            GaugeMetricFamily(
                "que_queue_depth",
                "Jobs that could run now and that no worker holds, by queue.",
                labels=["queue"],
            ),
            GaugeMetricFamily(
                "que_queue_latency_seconds",
                "Age of the oldest job that could run now, by queue.",
                labels=["queue"],
            ),
            GaugeMetricFamily("que_workers_busy", "Worker threads running a job now."),
            GaugeMetricFamily("que_workers", "Worker threads of this process."),
        )

    def collect(self) -> Iterator[GaugeMetricFamily]:
        depth, latency, busy, total = self._families()
        workers = self.metrics.workers()
        busy.add_metric([], sum(w.busy_count() for w in workers))
        total.add_metric([], sum(len(w.threads) for w in workers))
        worked = sorted(set(self.metrics.queues if self.metrics.queues is not None
                            else (queue for w in workers for queue in w.queues)))
        rows = self.metrics.queue_depth(worked)
        if rows is not None:
            seen = {queue for queue, _, _ in rows}
            # a worked queue with nothing waiting reads 0
            rows += [(queue, 0, 0.0) for queue in worked if queue not in seen]
            for queue, count, age in sorted(rows):
                depth.add_metric([queue], count)
                latency.add_metric([queue], age)
            yield depth
            yield latency
        yield busy
        yield total


class PrometheusMetrics:
    """The plugin: register it with :func:`install` (or ``plugin_manager().register``).

    :param registry: the prometheus_client registry to record into
        (default: the global ``prometheus_client.REGISTRY``).
    :param connect: opens a connection for the queue depth query; default:
        the first started worker's adapter and DSN (no queue gauges until one
        has started).
    :param depth_interval: the queue depth query runs at most this often (s).
    :param queues: the queues whose depth and latency are reported; default:
        those the started workers of this process work.
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        connect: Callable[[], Connection] | None = None,
        depth_interval: float = 5.0,
        queues: Sequence[str] | None = None,
    ) -> None:
        self.queues = None if queues is None else [str(name) for name in queues]
        self.registry = prometheus_client.REGISTRY if registry is None else registry
        self._connect = connect
        self.depth_interval = depth_interval
        self._workers: list[Any] = []
        self._lock = threading.Lock()  # guards _workers
        self._db_lock = threading.Lock()  # guards the depth query's state
        self._conn: Connection | None = None
        self._depth: list[tuple[str, int, float]] | None = None
        self._depth_queues: list[str] = []
        self._depth_at = float("-inf")
        self._server: Any = None
        labels = ["job_class", "queue"]
        self.worked = prometheus_client.Counter(
            "que_jobs_worked", "Jobs whose run returned.", labels, registry=self.registry
        )
        self.errored = prometheus_client.Counter(
            "que_jobs_errored", "Jobs whose run raised.", labels, registry=self.registry
        )
        self.expired = prometheus_client.Counter(
            "que_jobs_expired", "Jobs expired after their last retry.", labels,
            registry=self.registry,
        )
        self.duration = prometheus_client.Histogram(
            "que_job_duration_seconds", "Duration of job runs.", labels,
            buckets=DURATION_BUCKETS, registry=self.registry,
        )
        self._collector = _QueueCollector(self)
        self.registry.register(self._collector)

    # -- hooks ------------------------------------------------------------

    @staticmethod
    def _labels(job: Any) -> tuple[str, str]:
        from que_core.job import registry

        name = str(getattr(job, "job_class", type(job).__name__))
        return (name if name in registry else UNREGISTERED), str(job.queue)

    @hookimpl
    def que_job_succeeded(self, job: Any, duration: float) -> None:
        labels = self._labels(job)
        self.worked.labels(*labels).inc()
        self.duration.labels(*labels).observe(duration)

    @hookimpl
    def que_job_errored(
        self, job: Any, error: BaseException, duration: float, retry_in: float
    ) -> None:
        labels = self._labels(job)
        self.errored.labels(*labels).inc()
        self.duration.labels(*labels).observe(duration)

    @hookimpl
    def que_job_expired(self, job: Any, error: BaseException, duration: float) -> None:
        labels = self._labels(job)
        self.errored.labels(*labels).inc()
        self.expired.labels(*labels).inc()
        self.duration.labels(*labels).observe(duration)

    @hookimpl
    def que_worker_started(self, worker: Any) -> None:
        with self._lock:
            self._workers.append(worker)

    @hookimpl
    def que_worker_stopped(self, worker: Any) -> None:
        with self._lock:
            if worker in self._workers:
                self._workers.remove(worker)

    # -- queue depth --------------------------------------------------------

    def workers(self) -> list[Any]:
        with self._lock:
            return list(self._workers)

    def _connection(self) -> Connection | None:
        if self._conn is not None and not self._conn.closed:
            return self._conn
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._connect is not None:
            self._conn = self._connect()
        else:
            workers = self.workers()
            if not workers:
                return None
            self._conn = workers[0].adapter.connect(workers[0].dsn)
        return self._conn

    def queue_depth(self, queues: list[str]) -> list[tuple[str, int, float]] | None:
        """``(queue, depth, oldest age)`` rows of *queues*, at most
        *depth_interval* old; None when the query cannot run."""
        with self._db_lock:
            now = time.monotonic()
            if (self._depth is not None and queues == self._depth_queues
                    and now - self._depth_at < self.depth_interval):
                return list(self._depth)
            if not queues:
                return []
            try:
                conn = self._connection()
                if conn is None:
                    return None
                rows = conn.execute(q("metrics_queue_depth"), (queues,))
            except QueError as exc:
                log.warning("metrics: cannot read the queue depth: %s", exc)
                if self._conn is not None:
                    self._conn.close()
                    self._conn = None
                return None
            self._depth = [(str(r[0]), int(r[1]), max(0.0, float(r[2] or 0))) for r in rows]
            self._depth_queues = list(queues)
            self._depth_at = now
            return list(self._depth)

    # -- serving ----------------------------------------------------------

    def serve(self, port: int, host: str = "127.0.0.1") -> int:
        """Serve ``/metrics`` over HTTP from a daemon thread; return the port
        (useful with port 0: any free port). Loopback only unless *host*
        says otherwise (``0.0.0.0``: every interface)."""
        server, _thread = prometheus_client.start_http_server(
            port, addr=host, registry=self.registry
        )
        self._server = server
        bound = int(server.server_port)
        log.info(
            "serving Prometheus metrics on http://%s:%s/metrics",
            host, bound,
            extra={"que_event": "metrics_serving", "port": bound},
        )
        return bound

    def close(self) -> None:
        """Stop serving and close the depth query's connection."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        with self._db_lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def install(registry: CollectorRegistry | None = None, **kwargs: Any) -> PrometheusMetrics:
    """Create the plugin and register it with que-core's plugin manager."""
    from que_core.plugins import plugin_manager

    metrics = PrometheusMetrics(registry, **kwargs)
    plugin_manager().register(metrics, name="que_core.contrib.prometheus")
    return metrics


def uninstall(metrics: PrometheusMetrics) -> None:
    """Unregister *metrics* from the plugin manager and close it."""
    from que_core.plugins import plugin_manager

    plugin_manager().unregister(metrics)
    metrics.close()
