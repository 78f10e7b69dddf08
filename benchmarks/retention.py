"""Retention under load: a worker's drain rate while 100,000 old kept jobs are pruned.

    python benchmarks/retention.py                   # psycopg, 100,000 old rows, 30,000 jobs
    python benchmarks/retention.py --old 100000 --jobs 30000 --adapter pg8000

One database (unique name, dropped at the end) on --dsn, else $QUE_TEST_DSN /
$DATABASE_URL, else the embedded PostgreSQL. Two runs, each: --jobs NoopJob
rows bulk-inserted, ANALYZE, CHECKPOINT, one ``que work`` process with its
default settings but no retention of its own (--retain-finished never
--retain-expired never: the benchmark prunes, so that it knows when), the
clock from its registration to the first poll (every 50 ms) that finds no
waiting job.

1. baseline: the drain alone, next to --old finished rows (finished 10 days
   ago; kept jobs the worker never touches).
2. pruning: the same drain while this process prunes those rows as a
   worker's retention does (que_core.retention.Janitor.round: the election
   lock, batches of 1,000, a pause as long as each batch took), started
   when the worker registered.

Printed: each drain's jobs/s, the drain's rate during the pruning window
(jobs done between the prune's start and end / its duration), and the
prune's rows/s.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import _common as common
from benchmarks.noop_jobs import NoopJob
from que_core import plugins
from que_core.retention import Janitor, Pruned, Retention

CHUNK = 10_000
WAITING = "SELECT count(*) FROM que_jobs WHERE finished_at IS NULL AND expired_at IS NULL"


def add_old(conn, count: int) -> None:  # type: ignore[no-untyped-def]
    conn.execute(
        "INSERT INTO que_jobs (queue, priority, run_at, job_class, args, finished_at, "
        "job_schema_version) SELECT 'default', 100, now() - interval '11 days', "
        "'benchmarks.noop_jobs.NoopJob', jsonb_build_array(i), now() - interval '10 days', 2 "
        "FROM generate_series(1, %s) AS i", (count,))


def fill(raw, conn, jobs: int) -> None:  # type: ignore[no-untyped-def]
    for start in range(0, jobs, CHUNK):
        NoopJob.enqueue_many([[i] for i in range(start, min(jobs, start + CHUNK))], conn=raw)
    conn.execute("ANALYZE que_jobs")
    common.checkpoint(conn)


def drain(dsn: str, adapter: str, jobs: int, prune: bool) -> dict[str, float]:
    a = plugins.get_adapter(adapter)
    conn = a.connect(dsn)
    raw = a.connect(dsn)
    out: dict[str, float] = {}
    try:
        fill(raw.raw, conn, jobs)
        worker = common.WorkerProcess(dsn, adapter, ["--retain-finished", "never",
                                              "--retain-expired", "never"])
        try:
            start = worker.wait_registered(conn, listening=False)
            window: dict[str, float] = {}
            pruner = None
            if prune:
                def run_prune() -> None:
                    stop = threading.Event()
                    janitor = Janitor(lambda: a.connect(dsn), Retention(7 * 86400.0, None),
                                      60.0, stop)
                    ((window["left_before"],),) = conn_p.execute(WAITING)
                    window["start"] = time.monotonic()
                    result: Pruned | None = janitor.round()
                    window["end"] = time.monotonic()
                    ((window["left_after"],),) = conn_p.execute(WAITING)
                    window["rows"] = float(result.total if result else 0)
                    window["batches"] = float(result.batches if result else 0)

                conn_p = a.connect(dsn)
                pruner = threading.Thread(target=run_prune)
                pruner.start()
            while True:
                ((left,),) = conn.execute(WAITING)
                if left == 0:
                    break
                worker.check_alive()
                time.sleep(0.05)
            drained = time.monotonic()
            out["jobs_per_s"] = jobs / (drained - start)
            if pruner is not None:
                pruner.join()
                conn_p.close()
                span = window["end"] - window["start"]
                # The rate over the time both ran: to the prune's end, or the drain's.
                both = min(window["end"], drained) - window["start"]
                done = window["left_before"] - (window["left_after"]
                                                if window["end"] < drained else 0)
                out.update(prune_s=span, pruned=window["rows"], batches=window["batches"],
                           prune_rows_per_s=window["rows"] / span,
                           drain_during_prune=done / both, overlap=both / span)
        finally:
            worker.stop()
    finally:
        raw.close()
        conn.close()
    return out


def main() -> None:
    common.exit_cleanly_on_sigterm()
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dsn")
    p.add_argument("--adapter", default="psycopg")
    p.add_argument("--old", type=int, default=100_000, help="old finished rows to prune")
    p.add_argument("--jobs", type=int, default=30_000, help="jobs to drain in each run")
    args = p.parse_args()
    a = plugins.get_adapter(args.adapter)
    print(common.describe(), flush=True)
    with common.bench_database(a, common.server_dsn(args.dsn)) as dsn:
        conn = a.connect(dsn)
        try:
            add_old(conn, args.old)
            ((kept,),) = conn.execute("SELECT count(*) FROM que_jobs")
        finally:
            conn.close()
        print(f"{kept} old finished rows; draining {args.jobs} no-op jobs with one que work "
              f"process ({args.adapter}, default settings)")
        base = drain(dsn, args.adapter, args.jobs, prune=False)
        print(f"baseline  drain {base['jobs_per_s']:8.0f} jobs/s (next to the old rows)")
        during = drain(dsn, args.adapter, args.jobs, prune=True)
        print(f"pruning   drain {during['jobs_per_s']:8.0f} jobs/s overall, "
              f"{during['drain_during_prune']:8.0f} jobs/s while the prune ran")
        print(f"prune     {during['pruned']:.0f} rows in {during['prune_s']:.2f} s "
              f"({during['prune_rows_per_s']:.0f} rows/s, {during['batches']:.0f} batches; "
              "a pause as long as each batch between batches)")
        if during["overlap"] < 1.0:
            print(f"note: the drain ended before the prune did: the rate while pruning is over "
                  f"the first {during['overlap']:.0%} of the prune")
        print(f"ratio     {during['drain_during_prune'] / base['jobs_per_s']:.2f} of the "
              "baseline rate while pruning")
    print(common.describe(), flush=True)


if __name__ == "__main__":
    main()
