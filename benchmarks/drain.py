"""Drain throughput: how fast ONE worker process empties a queue of no-op jobs.

    python benchmarks/drain.py                       # psycopg, 20,000 jobs, 5 runs
    python benchmarks/drain.py --adapter all         # every installed adapter
    python benchmarks/drain.py --dsn postgresql://postgres@127.0.0.1:5432/postgres

Each invocation creates its own database (unique name, dropped at the end)
on the server given by --dsn, else $QUE_TEST_DSN / $DATABASE_URL, else the
embedded PostgreSQL. Each run: TRUNCATE que_jobs, bulk-insert --jobs NoopJob
rows with enqueue_many (one statement, no NOTIFY), ANALYZE, CHECKPOINT, then
start one ``que work`` process (its default settings: 6 threads, buffer 8,
poll interval 5 s, log level info; --workers / --worker-arg change them) and
poll ``count(*)`` every --poll seconds from this process.

The clock starts when the worker's locker has registered (its row in
que_lockers appears, polled every 5 ms: Python start-up and imports are not
counted) and stops at the first poll that finds que_jobs empty. jobs/s =
jobs / that time. The median of --runs is printed last.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import _common as common
from benchmarks._common import median, table
from benchmarks.noop_jobs import NoopJob
from que_core import plugins
from que_core.connection import Connection

CHUNK = 10_000  # jobs per enqueue_many statement


def fill(conn, adapter_conn, jobs: int) -> None:  # type: ignore[no-untyped-def]
    adapter_conn.execute("TRUNCATE que_jobs")
    for start in range(0, jobs, CHUNK):
        NoopJob.enqueue_many([[i] for i in range(start, min(jobs, start + CHUNK))], conn=conn)
    adapter_conn.execute("ANALYZE que_jobs")
    common.checkpoint(adapter_conn)


def count(conn: Connection) -> int:
    ((n,),) = conn.execute("SELECT count(*) FROM que_jobs")
    return int(n)


def one_run(dsn: str, adapter: str, jobs: int, extra: list[str], poll: float,
            modules: list[str] | None = None) -> dict[str, float]:
    a = plugins.get_adapter(adapter)
    conn = a.connect(dsn)
    try:
        fill(conn.raw, conn, jobs)
        n = count(conn)
        assert n == jobs, n
        modules = ["benchmarks.noop_jobs", *(modules or [])]
        worker = common.WorkerProcess(dsn, adapter, extra, modules)
        try:
            t0 = worker.wait_registered(conn, listening=False)
            first, t1 = worker.wait_drained(lambda: count(conn), jobs, t0, poll, 600)
            # CPU used by the worker process and its sessions' backends (the
            # database is ours alone: every other session on it is the worker's).
            backends = [r[0] for r in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid()"
            )]
            cpu_worker = common.cpu_seconds(worker.proc.pid)
            rss = common.peak_rss_mb(worker.proc.pid)
            cpu_pg = [common.cpu_seconds(b) for b in backends]
        finally:
            worker.stop()
    finally:
        conn.close()
    elapsed = t1 - t0
    return {
        "seconds": elapsed,
        "rate": jobs / elapsed,
        "startup": t0 - worker.started,
        "peak_rss_mb": rss if rss is not None else float("nan"),
        "first": (first or t1) - t0,
        # per job, microseconds; the worker figure includes its start-up
        "cpu_worker": cpu_worker * 1e6 / jobs if cpu_worker is not None else float("nan"),
        "cpu_pg": sum(cpu_pg) * 1e6 / jobs  # type: ignore[arg-type]
        if cpu_pg and None not in cpu_pg else float("nan"),
    }


def main(argv: list[str] | None = None) -> int:
    p = common.parser(__doc__, 20_000, every_adapter=True, poll=True, worker_modules=True)
    p.add_argument("--workers", type=int, default=None,
                   help="worker threads (`que work -w`; default: que's default, 6)")
    p.add_argument("--runs", type=int, default=5, help="runs per adapter (default 5)")
    p.add_argument("--worker-arg", action="append", default=[], metavar="ARG",
                   help="extra flag for `que work`, repeatable, e.g. --worker-arg=--buffer-size=32")
    args = p.parse_args(argv)
    server = common.begin(args.dsn)
    extra = list(args.worker_arg)
    if args.workers is not None:
        extra += ["--workers", str(args.workers)]
    results: dict[str, list[float]] = {}
    cpus: dict[str, list[tuple[float, float]]] = {}
    for name in common.adapter_names(args.adapter):
        rates: list[float] = []
        cpu: list[tuple[float, float]] = []
        with common.bench_database(plugins.get_adapter(name), server) as dsn:
            for run in range(1, args.runs + 1):
                r = one_run(dsn, name, args.jobs, extra, args.poll, args.worker_module)
                rates.append(r["rate"])
                cpu.append((r["cpu_worker"], r["cpu_pg"]))
                print(
                    f"drain {name} run {run}/{args.runs}: {args.jobs} jobs in "
                    f"{r['seconds']:.2f} s = {r['rate']:.0f} jobs/s "
                    f"(worker start-up {r['startup']:.2f} s, first job gone after "
                    f"{r['first'] * 1000:.0f} ms; CPU per job: worker process "
                    f"{r['cpu_worker']:.0f} us, its postgres backends {r['cpu_pg']:.0f} us; "
                    f"worker peak RSS {r['peak_rss_mb']:.1f} MB)",
                    flush=True,
                )
        results[name] = rates
        print(
            f"drain {name}: median {median(rates):.0f} jobs/s over {len(rates)} runs "
            f"(runs: {', '.join(f'{x:.0f}' for x in rates)}); median CPU per job: "
            f"worker {median([c[0] for c in cpu]):.0f} us, "
            f"postgres {median([c[1] for c in cpu]):.0f} us",
            flush=True,
        )
        cpus[name] = cpu
    print(common.describe(), flush=True)
    if len(results) > 1:
        print()
        print(table(
            ["adapter", "median jobs/s", "min", "max", "runs",
             "worker CPU us/job", "postgres CPU us/job"],
            [[n, f"{median(r):.0f}", f"{min(r):.0f}", f"{max(r):.0f}", len(r),
              f"{median([c[0] for c in cpus[n]]):.0f}", f"{median([c[1] for c in cpus[n]]):.0f}"]
             for n, r in results.items()],
        ))
    return 0


if __name__ == "__main__":
    sys.exit(main())
