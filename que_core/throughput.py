"""Per-minute tallies of the jobs a worker process ran, for the dashboard's
chart (``que web``): kept in memory by the worker threads and added to the
``que_core_throughput`` table by the listener every :data:`FLUSH_SECONDS`.

A worker thread adds each run to its minute's tally, under a lock held for a
few additions; the listener thread takes the tallies when it writes them.
Memory stays a few rows, however fast jobs run: keeping each run until the
flush held ~200 bytes a job, 11 MB of a worker draining 11,000 jobs/s. The
dashboard then reads at most an hour of minute rows instead of the jobs
(which are deleted when they succeed anyway).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from datetime import datetime
from typing import Any

from que_core.connection import Connection
from que_core.errors import ConnectionLost, DatabaseError
from que_core.sql import q

log = logging.getLogger("que_core.worker")

#: How often a worker process writes its tallies.
FLUSH_SECONDS = 5.0


#: (minute, queue) tallies kept for the next flush at most (a listener that
#: cannot write them, or rows naming ever new queues, must not make the
#: worker grow): runs of further ones are not counted.
MOST_KEPT = 10_000


class Throughput:
    """The runs of one worker process since its last flush, per minute and queue."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # (minute's epoch, queue) -> [done, failed, latency sum, latency max]
        self._sums: dict[tuple[int, str], list[float]] = {}
        self._last_flush = time.monotonic()

    def observe(self, queue: str, run_at: Any, duration: float, failed: bool) -> None:
        """One run of a job of *queue* due at *run_at*, which took *duration* s."""
        start = time.time() - duration
        latency = (max(0.0, start - run_at.timestamp()) if isinstance(run_at, datetime)
                   else 0.0)
        key = (int(start // 60) * 60, queue)
        with self._lock:
            row = self._sums.get(key)
            if row is None:
                if len(self._sums) >= MOST_KEPT:
                    return
                row = self._sums[key] = [0, 0, 0.0, 0.0]
            row[1 if failed else 0] += 1
            row[2] += latency
            if latency > row[3]:
                row[3] = latency

    def due(self) -> bool:
        return time.monotonic() - self._last_flush >= FLUSH_SECONDS

    def take(self) -> list[dict[str, Any]]:
        """The runs so far, summed up per minute and queue as rows for
        ``throughput_add``; forgotten here."""
        self._last_flush = time.monotonic()
        with self._lock:
            sums, self._sums = self._sums, {}
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
