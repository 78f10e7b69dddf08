"""Per-minute tallies of the jobs a worker process ran, for the dashboard's
chart (``que web``): kept in memory by the worker threads and added to the
``que_core_throughput`` table by the listener every :data:`FLUSH_SECONDS`.

A worker thread's part is one append to a deque per job (atomic, no lock);
the listener thread sums the runs up per minute when it writes them. The
dashboard then reads at most an hour of minute rows instead of the jobs
(which are deleted when they succeed anyway).
"""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from datetime import datetime
from typing import Any

from que_core.connection import Connection
from que_core.errors import ConnectionLost, DatabaseError
from que_core.sql import q

log = logging.getLogger("que_core.worker")

#: How often a worker process writes its tallies.
FLUSH_SECONDS = 5.0


#: Runs kept for the next flush at most (a listener that cannot write them
#: must not make the worker grow): beyond it the oldest are forgotten.
MOST_KEPT = 200_000


class Throughput:
    """The runs of one worker process since its last flush."""

    def __init__(self) -> None:
        # (end time, queue, run_at, duration, failed), appended by the
        # worker threads and taken by the listener: deque's append and
        # popleft are atomic.
        self._runs: deque[tuple[float, str, Any, float, bool]] = deque(maxlen=MOST_KEPT)
        self._last_flush = time.monotonic()

    def observe(self, queue: str, run_at: Any, duration: float, failed: bool) -> None:
        """One run of a job of *queue* due at *run_at*, which took *duration* s."""
        self._runs.append((time.time(), queue, run_at, duration, failed))

    def due(self) -> bool:
        return time.monotonic() - self._last_flush >= FLUSH_SECONDS

    def take(self) -> list[dict[str, Any]]:
        """The runs so far, summed up per minute and queue as rows for
        ``throughput_add``; forgotten here."""
        self._last_flush = time.monotonic()
        # (minute's epoch, queue) -> [done, failed, latency sum, latency max]
        sums: dict[tuple[int, str], list[float]] = {}
        runs = self._runs
        while True:
            try:
                ended, queue, run_at, duration, failed = runs.popleft()
            except IndexError:
                break
            start = ended - duration
            latency = (max(0.0, start - run_at.timestamp()) if isinstance(run_at, datetime)
                       else 0.0)
            key = (int(start // 60) * 60, queue)
            row = sums.get(key)
            if row is None:
                row = sums[key] = [0, 0, 0.0, 0.0]
            row[1 if failed else 0] += 1
            row[2] += latency
            if latency > row[3]:
                row[3] = latency
        return [
            {"minute": minute, "queue": queue, "done": int(d), "failed": int(f),
             "latency_sum": s, "latency_max": m}
            for (minute, queue), (d, f, s, m) in sorted(sums.items())
        ]

    def flush(self, conn: Connection) -> None:
        """Add the tallies to the table (and drop its rows older than a day).
        On a database error they are lost, not retried: they are statistics
        (a lost session is raised, for the listener to reconnect)."""
        rows = self.take()
        if not rows:
            return
        try:
            conn.execute(q("throughput_add"), (json.dumps(rows),))
        except ConnectionLost:
            raise
        except DatabaseError as exc:
            log.warning("cannot write the throughput tallies (%s job runs): %s",
                        sum(r["done"] + r["failed"] for r in rows), exc)
