"""Job classes the benchmark workers import (``que work ... benchmarks.noop_jobs``)."""

from __future__ import annotations

import time

from que_core import Job

#: Where LatencyJob records when it started (created by benchmarks/latency.py).
LATENCY_TABLE = """
CREATE TABLE IF NOT EXISTS bench_latency (
  seq          integer PRIMARY KEY,
  started_db   timestamptz NOT NULL,      -- clock_timestamp() of the job's first statement
  started_host double precision NOT NULL  -- time.time() on entering run()
)
"""


class NoopJob(Job):
    """Does nothing: what is measured is que-core's own cost per job."""

    job_name = "bench.NoopJob"

    def run(self, *args: object) -> None:
        pass


class AsyncNoopJob(Job):
    """NoopJob as an ``async def``: worked on the worker's event loop."""

    job_name = "bench.AsyncNoopJob"

    async def run(self, *args: object) -> None:
        pass


class LatencyJob(Job):
    """Records when it started, on the database clock and on the host clock."""

    job_name = "bench.LatencyJob"

    def run(self, seq: int) -> None:
        started_host = time.time()
        assert self.db is not None
        self.db.execute(
            "INSERT INTO bench_latency (seq, started_db, started_host) "
            "VALUES (%s, clock_timestamp(), %s) ON CONFLICT (seq) DO NOTHING",
            (seq, started_host),
        )


def burn(loops: int) -> int:
    """Pure-Python arithmetic: holds the GIL throughout."""
    x = 0
    for i in range(loops):
        x = (x + i * i) % 1_000_003
    return x


class BurnJob(Job):
    """Burns the CPU for *loops* rounds of :func:`burn` (benchmarks/processes.py
    picks how many make ~5 ms)."""

    job_name = "bench.BurnJob"

    def run(self, loops: int) -> None:
        burn(loops)
