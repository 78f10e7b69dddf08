"""A worker in the foreground until SIGINT/SIGTERM: how ``que work``,
``manage.py que_work`` and ``flask que work`` stop, and their exit statuses.

The first signal stops taking jobs and lets running ones finish; the process
then exits normally (status 0) when they all did, or with
:data:`EXIT_UNFINISHED` when the shutdown deadline passed first. A second
signal exits at once with :data:`EXIT_SECOND_SIGNAL`. Either way the jobs
left unfinished keep their rows and run again: their sessions end with the
process, and their locks with them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

from que_core.errors import ConfigurationError, QueError
from que_core.options import DEFAULTS

log = logging.getLogger("que_core.worker")

#: The shutdown deadline passed with jobs still running.
EXIT_UNFINISHED = 5
#: A second SIGINT/SIGTERM: exited at once, running jobs abandoned.
EXIT_SECOND_SIGNAL = 6


class WorkerDied(QueError):
    """The worker stopped by itself (its error is in the log)."""


def _leave(status: int) -> None:
    """Exit now, without joining the job threads still running."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    logging.shutdown()
    os._exit(status)


def work_until_signalled(
    start: Callable[[], Any],
    stop: Callable[[Any], bool],
    metrics_port: int | None = None,
    metrics_host: str = DEFAULTS["metrics_host"],
) -> None:
    """Start a worker with *start* (it returns the worker), block until SIGINT
    or SIGTERM, then call *stop* (it stops the worker and returns whether every
    running job finished in time). With *metrics_port*, Prometheus metrics are
    served on it meanwhile (:mod:`que_core.contrib.prometheus`).

    The signal handlers are set before *start*, so a signal while the worker
    starts stops it as soon as it has started. Returns when every job
    finished. Exits the process with :data:`EXIT_UNFINISHED` when they did
    not, and with :data:`EXIT_SECOND_SIGNAL` on a second signal, each with a
    log line. Raises :class:`WorkerDied` if the worker's locker stops on its
    own meanwhile. Call it from the main thread.
    """
    signalled = threading.Event()
    worker: Any = None

    def on_signal(signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if signalled.is_set():
            log.warning(
                "received %s again: exiting at once with status %s; %s running job(s) "
                "abandoned, to be worked again", name, EXIT_SECOND_SIGNAL,
                worker.busy_count() if worker is not None else 0,
            )
            _leave(EXIT_SECOND_SIGNAL)
        log.info("received %s: finishing running jobs (a second signal exits at once)", name)
        signalled.set()

    metrics = None
    if metrics_port is not None:
        try:
            from que_core.contrib import prometheus
        except ImportError as exc:
            raise ConfigurationError(f"--metrics-port: {exc}") from None
        metrics = prometheus.install()
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        worker = start()
        if metrics is not None and metrics_port is not None:
            try:
                metrics.serve(metrics_port, metrics_host)
            except OSError as exc:
                stop(worker)
                raise QueError(
                    f"cannot serve metrics on {metrics_host}:{metrics_port}: {exc}"
                ) from None
        while not signalled.wait(0.5):
            if not worker.running:
                raise WorkerDied("the worker stopped unexpectedly")
        if not stop(worker):
            log.warning(
                "exiting with status %s: the shutdown deadline passed with jobs unfinished; "
                "they will be worked again", EXIT_UNFINISHED,
            )
            _leave(EXIT_UNFINISHED)
    finally:
        if metrics is not None:
            metrics.close()
