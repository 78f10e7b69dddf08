"""que-core's driver for benchmarks/compare.py (see _driver.py): the public API
on psycopg 3. Its worker is ``que work --adapter psycopg benchmarks.noop_jobs``."""

from __future__ import annotations

import argparse

import psycopg

from benchmarks.noop_jobs import AsyncNoopJob, LatencyJob, NoopJob
from benchmarks.systems._driver import chunks, dsn, main, paced, timed
from que_core import Job

#: The kinds of job a drain can fill (compare.py's que-core "drains").
JOBS: dict[str, type[Job]] = {"noop": NoopJob, "async_noop": AsyncNoopJob}


def connect() -> psycopg.Connection:
    return psycopg.connect(dsn(), autocommit=True)


def fill(a: argparse.Namespace) -> None:
    with connect() as conn:
        for r in chunks(a.n):
            JOBS[a.kind].enqueue_many([[i] for i in r], conn=conn)


def single(a: argparse.Namespace) -> float:
    with connect() as conn:  # autocommit: each enqueue is its own transaction
        return timed(lambda: [NoopJob.enqueue(i, conn=conn) for i in range(a.n)])


def bulk(a: argparse.Namespace) -> float:
    args = [[i] for i in range(a.n)]
    with connect() as conn:  # enqueue_many: one statement in one transaction
        return timed(lambda: NoopJob.enqueue_many(args, conn=conn))


def latency(a: argparse.Namespace) -> list[tuple[float, float]]:
    with connect() as conn:
        return paced(a.n, a.spacing, lambda seq: LatencyJob.enqueue(seq, conn=conn))


if __name__ == "__main__":
    main({"fill": fill, "single": single, "bulk": bulk, "latency": latency}, ("psycopg",))
