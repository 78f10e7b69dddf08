"""pgqueuer's driver for benchmarks/compare.py (see _driver.py), and the
factory its worker runs, written as in pgqueuer's README:

    python -m pgqueuer run benchmarks.systems.pgqueuer_bench:create_pgqueuer

that is ``pgq run`` at its defaults (batch size 10, asyncpg, uvloop, INFO
logging, which writes nothing per job). Enqueues: ``Queries.enqueue`` on
asyncpg, or ``SyncQueries.enqueue`` on a sync psycopg connection (autocommit,
as pgqueuer requires), the same driver family as que-core's. A list enqueue is
one statement, so one transaction.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import asyncpg
import psycopg
from pgqueuer import PgQueuer
from pgqueuer.db import AsyncpgDriver, SyncPsycopgDriver
from pgqueuer.models import Job
from pgqueuer.queries import Queries, SyncQueries

from benchmarks.systems._driver import atimed, chunks, dsn, main, paced, timed

RECORD = "INSERT INTO bench_latency VALUES ($1, clock_timestamp(), $2) ON CONFLICT DO NOTHING"


@contextlib.asynccontextmanager
async def create_pgqueuer() -> AsyncIterator[PgQueuer]:
    connection = await asyncpg.connect(dsn())
    records = await asyncpg.create_pool(dsn(), min_size=2, max_size=4)  # latency jobs' own
    pgq = PgQueuer(AsyncpgDriver(connection))

    @pgq.entrypoint("noop")
    async def noop(job: Job) -> None:
        pass

    @pgq.entrypoint("latency")
    async def latency(job: Job) -> None:
        started = time.time()
        assert job.payload is not None
        await records.execute(RECORD, int(job.payload), started)

    try:
        yield pgq
    finally:
        await records.close()
        await connection.close()


def sync_queries() -> SyncQueries:
    return SyncQueries(SyncPsycopgDriver(psycopg.connect(dsn(), autocommit=True)))


async def async_queries() -> Queries:
    return Queries(AsyncpgDriver(await asyncpg.connect(dsn())))


def many(n: int, entrypoint: str = "noop") -> tuple[list[str], list[bytes | None], list[int]]:
    return [entrypoint] * n, [str(i).encode() for i in range(n)], [0] * n


def fill(a: argparse.Namespace) -> None:
    q = sync_queries()
    for r in chunks(a.n):
        q.enqueue(*many(len(r)))


def single(a: argparse.Namespace) -> float:
    if a.driver == "psycopg":
        q = sync_queries()
        return timed(lambda: [q.enqueue("noop", str(i).encode()) for i in range(a.n)])

    async def run() -> float:
        aq = await async_queries()

        async def each() -> None:
            for i in range(a.n):
                await aq.enqueue("noop", str(i).encode())

        return await atimed(each)

    return asyncio.run(run())


def bulk(a: argparse.Namespace) -> float:
    args = many(a.n)
    if a.driver == "psycopg":
        q = sync_queries()
        return timed(lambda: q.enqueue(*args))

    async def run() -> float:
        aq = await async_queries()
        return await atimed(lambda: aq.enqueue(*args))

    return asyncio.run(run())


def latency(a: argparse.Namespace) -> list[tuple[float, float]]:
    q = sync_queries()  # psycopg, as que-core's and procrastinate's enqueues here
    return paced(a.n, a.spacing, lambda seq: q.enqueue("latency", str(seq).encode()))


if __name__ == "__main__":
    main({"fill": fill, "single": single, "bulk": bulk, "latency": latency},
         ("psycopg", "asyncpg"))
