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

With ``que work --processes N`` the supervisor serves one endpoint
(:class:`SupervisorMetrics`) and its worker processes record into
prometheus_client's multiprocess directory (``multiprocess=True``).

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
import os
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

#: How often a supervisor's child records its busy and total thread counts (s).
SAMPLE_EVERY = 0.5


class _QueueCollector(Collector):
    """Queue depth and latency (one cached query) and, *with_workers*, busy and
    total worker threads of this process's workers."""

    def __init__(self, metrics: _Metrics, with_workers: bool = True) -> None:
        self.metrics = metrics
        self.with_workers = with_workers

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield from self._families()

    def _families(self) -> tuple[GaugeMetricFamily, ...]:
        depth = (
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
        )
        if not self.with_workers:
            return depth
        return (*depth, GaugeMetricFamily("que_workers_busy", _BUSY_HELP),
                GaugeMetricFamily("que_workers", _WORKERS_HELP))

    def collect(self) -> Iterator[GaugeMetricFamily]:
        families = self._families()
        depth, latency = families[:2]
        workers = self.metrics.workers()
        if self.with_workers:
            busy, total = families[2:]
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
        yield from families[2:]


_BUSY_HELP = "Worker threads running a job now."
_WORKERS_HELP = "Worker threads of this process."


class _Metrics:
    """What a worker process's metrics and a supervisor's share: the queue depth
    query on a connection of its own, cached, and the HTTP server."""

    registry: CollectorRegistry

    def __init__(self, connect: Callable[[], Connection] | None, depth_interval: float,
                 queues: Sequence[str] | None) -> None:
        self.queues = None if queues is None else [str(name) for name in queues]
        self._connect = connect
        self.depth_interval = depth_interval
        self._db_lock = threading.Lock()  # guards the depth query's state
        self._conn: Connection | None = None
        self._depth: list[tuple[str, int, float]] | None = None
        self._depth_queues: list[str] = []
        self._depth_at = float("-inf")
        self._server: Any = None

    def workers(self) -> list[Any]:
        return []

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


class PrometheusMetrics(_Metrics):
    """The plugin: register it with :func:`install` (or ``plugin_manager().register``).

    :param registry: the prometheus_client registry to record into
        (default: the global ``prometheus_client.REGISTRY``).
    :param connect: opens a connection for the queue depth query; default:
        the first started worker's adapter and DSN (no queue gauges until one
        has started).
    :param depth_interval: the queue depth query runs at most this often (s).
    :param queues: the queues whose depth and latency are reported; default:
        those the started workers of this process work.
    :param multiprocess: this process is one of a supervisor's children
        (prometheus_client's multiprocess mode, ``$PROMETHEUS_MULTIPROC_DIR``
        set): everything is recorded to that directory, the thread gauges
        sampled every :data:`SAMPLE_EVERY` seconds, and the supervisor
        (:class:`SupervisorMetrics`) serves them and the queue gauges.
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        connect: Callable[[], Connection] | None = None,
        depth_interval: float = 5.0,
        queues: Sequence[str] | None = None,
        multiprocess: bool = False,
    ) -> None:
        super().__init__(connect, depth_interval, queues)
        if multiprocess and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            raise QueError("multiprocess metrics need $PROMETHEUS_MULTIPROC_DIR, set before "
                           "prometheus_client is imported")
        if registry is None:
            registry = CollectorRegistry() if multiprocess else prometheus_client.REGISTRY
        self.registry = registry
        self._workers: list[Any] = []
        self._lock = threading.Lock()  # guards _workers
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
        self._sampling: threading.Event | None = None
        if multiprocess:
            # Summed over the live children: the supervisor forgets a dead one's.
            self._busy = prometheus_client.Gauge(
                "que_workers_busy", _BUSY_HELP, registry=self.registry,
                multiprocess_mode="livesum")
            self._threads = prometheus_client.Gauge(
                "que_workers", _WORKERS_HELP, registry=self.registry,
                multiprocess_mode="livesum")
            self._sampling = threading.Event()
            threading.Thread(target=self._sample, daemon=True, name="que-metrics-sample").start()
        else:
            self.registry.register(_QueueCollector(self))

    def _sample(self) -> None:
        assert self._sampling is not None
        while True:
            self._record_threads()
            if self._sampling.wait(SAMPLE_EVERY):
                return

    def _record_threads(self) -> None:
        workers = self.workers()
        self._busy.set(sum(w.busy_count() for w in workers))
        self._threads.set(sum(len(w.threads) for w in workers))

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
        if self._sampling is not None:
            self._record_threads()

    @hookimpl
    def que_worker_stopped(self, worker: Any) -> None:
        with self._lock:
            if worker in self._workers:
                self._workers.remove(worker)
        if self._sampling is not None:
            self._record_threads()

    def workers(self) -> list[Any]:
        with self._lock:
            return list(self._workers)

    def close(self) -> None:
        """Stop serving (and sampling) and close the depth query's connection."""
        if self._sampling is not None:
            self._sampling.set()
        super().close()


class SupervisorMetrics(_Metrics):
    """The one endpoint of ``que work --processes N``: what the children
    recorded in *path* (prometheus_client's multiprocess mode: counters and
    histograms summed over every child that ever ran, the thread gauges over
    the live ones), and the queue gauges from the supervisor's own query.

    :param path: the children's ``$PROMETHEUS_MULTIPROC_DIR``, empty at the start.
    :param connect: opens the queue depth query's connection.
    :param queues: the queues the children work.
    """

    def __init__(self, path: str, *, connect: Callable[[], Connection],
                 queues: Sequence[str], depth_interval: float = 5.0) -> None:
        from prometheus_client.multiprocess import MultiProcessCollector

        super().__init__(connect, depth_interval, queues)
        self.path = path
        self.registry = CollectorRegistry()
        MultiProcessCollector(self.registry, path=path)  # type: ignore[no-untyped-call]
        self.registry.register(_QueueCollector(self, with_workers=False))

    def process_died(self, pid: int) -> None:
        """Forget child *pid*'s live gauges (its counts stay in the totals)."""
        from prometheus_client.multiprocess import mark_process_dead

        mark_process_dead(pid, self.path)  # type: ignore[no-untyped-call]


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
