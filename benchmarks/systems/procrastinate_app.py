"""The procrastinate app that benchmarks/compare.py's procrastinate worker runs
(see procrastinate_bench.py). A module of its own: procrastinate wants its app
outside the __main__ module."""

from __future__ import annotations

import os
import time

from procrastinate import App, JobContext, PsycopgConnector

app = App(connector=PsycopgConnector(conninfo=os.environ.get("DATABASE_URL", "")))

RECORD = ("INSERT INTO bench_latency VALUES (%(seq)s, clock_timestamp(), %(started)s) "
          "ON CONFLICT DO NOTHING")


@app.task(name="noop")
async def noop(i: int) -> None:
    pass


@app.task(name="latency", pass_context=True)
async def latency_job(context: JobContext, seq: int) -> None:
    started = time.time()
    await context.app.connector.execute_query_async(RECORD, seq=seq, started=started)
