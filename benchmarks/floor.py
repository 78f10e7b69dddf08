"""What the server itself allows for enqueues, next to que-core's, in one run.

    python benchmarks/floor.py                  # 3 rounds, 2,000 single and 100,000 bulk rows
    python benchmarks/floor.py --rounds 5 --single 1000

Each round alternates, on one database of its own (psycopg 3, autocommit):

* single: ``NoopJob.enqueue`` one job per transaction, against the cheapest
  durable write there is: a one-column INSERT into a table with no index, one
  per transaction. Both wait for the commit's WAL flush.
* bulk: ``NoopJob.enqueue_many`` of --bulk jobs in one transaction (COPY),
  against a COPY of the same rows (as text) into a copy of ``que_jobs`` with
  no index, with its primary key, and with every index of Que's schema
  (version 7: the primary key, ``que_poll_idx`` and three GIN indexes on
  ``data``, ``args`` and ``kwargs``).

It prints one line per run and a table of medians, with each figure as a
fraction of its floor: it tells what is Python's and what is the server's.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg

from benchmarks._common import bench_database, describe, median, server_dsn, table
from benchmarks.noop_jobs import NoopJob
from que_core import plugins

COLUMNS = "(id, queue, priority, run_at, job_class, args, kwargs, data, job_schema_version)"
#: Que's indexes on que_jobs, beyond its primary key (schema version 7).
QUE_INDEXES = (
    "CREATE INDEX ON {t} (job_schema_version, queue, priority, run_at, id)"
    " WHERE finished_at IS NULL AND expired_at IS NULL",
    "CREATE INDEX ON {t} USING gin (data jsonb_path_ops)",
    "CREATE INDEX ON {t} USING gin (args jsonb_path_ops)",
    "CREATE INDEX ON {t} USING gin (kwargs jsonb_path_ops)",
)


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bare_table(conn: psycopg.Connection, indexes: str) -> str:
    """A fresh copy of que_jobs' columns: no index, "pkey" or "que" (all of Que's)."""
    conn.execute("DROP TABLE IF EXISTS floor_jobs")
    conn.execute("CREATE TABLE floor_jobs (LIKE que_jobs INCLUDING DEFAULTS)")
    if indexes in ("pkey", "que"):
        conn.execute("ALTER TABLE floor_jobs ADD PRIMARY KEY (id)")
    if indexes == "que":
        for statement in QUE_INDEXES:
            conn.execute(statement.format(t="floor_jobs"))
    return "floor_jobs"


def copy_rows(conn: psycopg.Connection, n: int) -> float:
    text = "".join(
        f"{i}\tdefault\t100\t2026-01-01 00:00:00+00\tNoopJob\t[{i}]\t{{}}\t{{}}\t2\n"
        for i in range(1, n + 1)
    )

    def run() -> None:
        with conn.transaction(), conn.cursor() as cur, \
                cur.copy(f"COPY floor_jobs {COLUMNS} FROM STDIN") as copy:
            copy.write(text)

    return timed(run)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--single", type=int, default=2000, help="single enqueues per run")
    parser.add_argument("--bulk", type=int, default=100_000, help="rows per bulk run")
    args = parser.parse_args(argv)
    print(describe(), flush=True)
    rates: dict[str, list[float]] = {}

    def record(name: str, n: int, seconds: float) -> None:
        rates.setdefault(name, []).append(n / seconds)
        print(f"{name}: {n} rows in {seconds:.2f} s = {n / seconds:,.0f} rows/s", flush=True)

    n, jobs = args.single, [[i] for i in range(args.bulk)]
    with bench_database(plugins.get_adapter("psycopg"), server_dsn(args.dsn)) as db, \
            psycopg.connect(db, autocommit=True) as conn:
        conn.execute("CREATE TABLE floor_single (n integer)")
        for _ in range(args.rounds):
            record("single: que-core enqueue", n,
                   timed(lambda: [NoopJob.enqueue(i, conn=conn) for i in range(n)]))
            record("single: bare INSERT", n, timed(lambda: [
                conn.execute("INSERT INTO floor_single VALUES (%s)", (i,)) for i in range(n)
            ]))
            conn.execute("TRUNCATE que_jobs")
            record("bulk: que-core enqueue_many", args.bulk,
                   timed(lambda: NoopJob.enqueue_many(jobs, conn=conn)))
            for indexes in ("none", "pkey", "que"):
                bare_table(conn, indexes)
                record(f"bulk: COPY, {indexes} indexes", args.bulk, copy_rows(conn, args.bulk))
    medians = {name: median(values) for name, values in rates.items()}
    floors = {"single": medians["single: bare INSERT"], "bulk": medians["bulk: COPY, none indexes"]}
    print()
    print(table(
        ["what", "rows/s (median)", "of its floor"],
        [[name, f"{rate:,.0f}", f"{rate / floors[name.split(':')[0]]:.2f}"]
         for name, rate in medians.items()],
    ))
    print(describe(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
