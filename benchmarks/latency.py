"""Pickup latency: how long a job enqueued on an idle worker waits to start.

    python benchmarks/latency.py                     # psycopg, 500 jobs, 3 runs
    python benchmarks/latency.py --adapter all

An idle ``que work`` process with its default settings (poll interval 5 s,
so only LISTEN/NOTIFY can make the pickup fast) works LatencyJob. This
process enqueues --jobs jobs one at a time, each with ``LatencyJob.enqueue``
on an autocommit session (a single INSERT: its own committed transaction,
firing the NOTIFY), spaced --spacing seconds apart (10 ms).

Both ends are read on the DATABASE clock (clock_timestamp()):

* commit: right after the enqueue's INSERT has returned (committed), the
  enqueuer sends ``SELECT clock_timestamp()``. This reads the clock one
  client-to-server hop after the real commit, so latencies are
  underestimated by that hop (~0.05 ms on a local socket).
* start: the job's first statement inserts clock_timestamp() into
  bench_latency.

latency = start - commit. As a cross-check the same difference is taken on
the HOST clock (time.time() after the enqueue returned; time.time() on
entering run()); it is meaningful only when the enqueuer and the worker run
on the same host, as they do here. p50/p90/p99/max are nearest-rank
percentiles of one run; with several --runs each figure printed is the
median over the runs.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import _common as common
from benchmarks._common import median, table
from benchmarks.noop_jobs import LATENCY_TABLE, LatencyJob
from que_core import plugins

STARTED = "SELECT count(*) FROM bench_latency"
QUANTILES = (("p50", 0.50), ("p90", 0.90), ("p99", 0.99), ("max", 1.0))


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    k = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[k - 1]


def summary(values: list[float]) -> dict[str, float]:
    s = sorted(values)
    return {name: percentile(s, q) for name, q in QUANTILES}


def one_run(dsn: str, adapter: str, jobs: int, spacing: float, extra: list[str],
            settle: float) -> tuple[dict[str, float], dict[str, float]]:
    a = plugins.get_adapter(adapter)
    conn = a.connect(dsn)
    try:
        conn.execute(LATENCY_TABLE)
        conn.execute("TRUNCATE bench_latency, que_jobs")
        worker = common.WorkerProcess(dsn, adapter, extra)
        try:
            worker.wait_registered(conn, listening=True)
            time.sleep(settle)  # let the first poll and the thread start-ups pass: idle
            committed_db: list[float] = []
            committed_host: list[float] = []
            t0 = time.monotonic()
            for seq in range(jobs):
                delay = t0 + seq * spacing - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                LatencyJob.enqueue(seq, conn=conn.raw)  # autocommit: committed on return
                committed_host.append(time.time())
                ((at,),) = conn.execute("SELECT extract(epoch FROM clock_timestamp())::float8")
                committed_db.append(float(at))
            worker.wait_count(lambda: conn.execute(STARTED)[0][0], jobs, 60,
                              lambda n: f"only {n} of {jobs} jobs started in 60 s")
        finally:
            worker.stop()
        rows = conn.execute(
            "SELECT seq, extract(epoch FROM started_db)::float8, started_host "
            "FROM bench_latency ORDER BY seq"
        )
    finally:
        conn.close()
    db_ms = [(float(s) - committed_db[q]) * 1000 for q, s, _ in rows]
    host_ms = [(float(h) - committed_host[q]) * 1000 for q, _, h in rows]
    return summary(db_ms), summary(host_ms)


def fmt(s: dict[str, float]) -> str:
    return " ".join(f"{k} {v:.2f}" for k, v in s.items())


def main(argv: list[str] | None = None) -> int:
    p = common.parser(__doc__, 500, every_adapter=True, poll=False)
    p.add_argument("--spacing", type=float, default=0.010,
                   help="seconds between enqueues (default 0.010)")
    p.add_argument("--runs", type=int, default=3, help="runs per adapter (default 3)")
    p.add_argument("--settle", type=float, default=1.0,
                   help="seconds the worker idles before the first enqueue (default 1)")
    p.add_argument("--worker-arg", action="append", default=[], metavar="ARG",
                   help="extra flag for `que work`, repeatable")
    args = p.parse_args(argv)
    server = common.begin(args.dsn)
    results: dict[str, tuple[dict[str, float], dict[str, float]]] = {}
    for name in common.adapter_names(args.adapter):
        db_runs, host_runs = [], []
        with common.bench_database(plugins.get_adapter(name), server) as dsn:
            for run in range(1, args.runs + 1):
                db, host = one_run(dsn, name, args.jobs, args.spacing, args.worker_arg,
                                   args.settle)
                db_runs.append(db)
                host_runs.append(host)
                print(f"latency {name} run {run}/{args.runs}: ms, db clock: {fmt(db)}"
                      f" | host clock: {fmt(host)}", flush=True)
        db_med = {k: median([r[k] for r in db_runs]) for k, _ in QUANTILES}
        host_med = {k: median([r[k] for r in host_runs]) for k, _ in QUANTILES}
        results[name] = (db_med, host_med)
        print(f"latency {name}: {args.jobs} jobs x {args.runs} runs, pickup ms (db clock), "
              f"medians over runs: {fmt(db_med)} (host clock: {fmt(host_med)})", flush=True)
    print(common.describe(), flush=True)
    if len(results) > 1:
        print()
        print(table(
            ["adapter", "p50 ms", "p90 ms", "p99 ms", "max ms", "p50 ms (host clock)"],
            [[n, *(f"{d[k]:.2f}" for k, _ in QUANTILES), f"{h['p50']:.2f}"]
             for n, (d, h) in results.items()],
        ))
    return 0


if __name__ == "__main__":
    sys.exit(main())
