"""Where a drain's time goes: an in-process Worker whose sessions count and
time every statement, per thread, plus the locker's batch sizes.

    python benchmarks/profile_drain.py --dsn postgresql://postgres@127.0.0.1:5432/postgres
    python benchmarks/profile_drain.py --yappi        # also a yappi CPU profile (slower)

Same set-up as drain.py (its own database, --jobs NoopJob rows bulk-inserted,
Worker defaults; logging at INFO to a file as `que work` does), but the
Worker runs in this process so that its Connection objects can be wrapped.
Prints round trips per job by statement and thread, the time spent waiting
on each, and how many jobs each claim (``next_jobs``) asked for, returned,
and wrote outcomes for.
"""

from __future__ import annotations

import argparse
import collections
import importlib
import logging
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import bench_database, exit_cleanly_on_sigterm, server_dsn
from benchmarks.drain import fill
from que_core import Worker, plugins
from que_core.sql import queries

NAMES = {sql: name for name, sql in queries().items()}
stats: collections.Counter[tuple[str, str]] = collections.Counter()
waits: collections.Counter[tuple[str, str]] = collections.Counter()
sizes: dict[str, collections.Counter[int]] = collections.defaultdict(collections.Counter)
_lock = threading.Lock()


def _kind(thread: str) -> str:
    return "worker" if thread.startswith("que-worker") else thread


class CountingConnection:
    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.raw = inner.raw

    def execute(self, sql: str, params: Any = ()) -> Any:
        name = NAMES.get(sql, sql.split()[0][:20])
        t = time.perf_counter()
        rows = self._inner.execute(sql, params)
        dt = time.perf_counter() - t
        key = (_kind(threading.current_thread().name), name)
        with _lock:
            stats[key] += 1
            waits[key] += dt
            if name == "next_jobs":  # (finished, outcomes, unlock, queues, max_priority, lim, ...)
                sizes["next_jobs limit"][params[5]] += 1
                sizes["next_jobs rows"][len(rows)] += 1
                sizes["next_jobs deletes"][len(params[0] or ())] += 1
                sizes["next_jobs unlocks"][len(params[2] or ())] += 1
        return rows

    def transaction(self) -> Any:
        return self._inner.transaction()

    def notifications(self, timeout: float) -> Any:
        return self._inner.notifications(timeout)

    def copy_in(self, sql: str, rows: Any) -> None:
        self._inner.copy_in(sql, rows)

    def reset(self) -> bool:
        return bool(self._inner.reset())

    def close(self) -> None:
        self._inner.close()

    @property
    def closed(self) -> bool:
        return bool(self._inner.closed)


class CountingAdapter:
    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.name = inner.name

    def connect(self, dsn: str) -> CountingConnection:
        return CountingConnection(self._inner.connect(dsn))

    def wrap(self, raw: Any) -> Any:
        return self._inner.wrap(raw)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--adapter", default="psycopg")
    p.add_argument("--jobs", type=int, default=20_000)
    p.add_argument("--dsn", default=None)
    p.add_argument("--batch-size", type=int, default=20)
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--log-level", default="info")
    p.add_argument("--patch", action="append", default=[], metavar="MODULE",
                   help="module to import once the database exists (an experiment that\n"
                   "patches que_core; $DATABASE_URL is set to the bench database)")
    p.add_argument("--yappi", action="store_true", help="print a yappi CPU profile too")
    args = p.parse_args(argv)
    exit_cleanly_on_sigterm()

    log = tempfile.NamedTemporaryFile(prefix="que_profile_", suffix=".log")  # noqa: SIM115
    logging.basicConfig(level=getattr(logging, args.log_level.upper()), filename=log.name,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    inner = plugins.get_adapter(args.adapter)
    adapter = CountingAdapter(inner)
    with bench_database(inner, server_dsn(args.dsn)) as dsn:
        os.environ["DATABASE_URL"] = dsn
        for name in args.patch:
            importlib.import_module(name)
        conn = inner.connect(dsn)
        fill(conn.raw, conn, args.jobs)
        stats.clear()
        if args.yappi:
            import yappi

            yappi.set_clock_type("cpu")
            yappi.start()
        worker = Worker(dsn, adapter=adapter, batch_size=args.batch_size,
                        worker_count=args.workers)
        t0 = time.monotonic()
        c0 = time.process_time()
        worker.start()
        while conn.execute("SELECT count(*) FROM que_jobs")[0][0]:
            time.sleep(0.02)
        elapsed = time.monotonic() - t0
        cpu = time.process_time() - c0
        if args.yappi:
            yappi.stop()
        worker.stop()
        conn.close()
    n = args.jobs
    print(f"{n} jobs in {elapsed:.2f} s = {n / elapsed:.0f} jobs/s; "
          f"process CPU {cpu * 1e6 / n:.0f} us/job")
    print(f"\n{'thread':8} {'statement':22} {'per job':>8} {'ms/call':>8} {'us/job waiting':>15}")
    for (thread, name), count in sorted(stats.items(), key=lambda kv: -kv[1]):
        w = waits[(thread, name)]
        print(f"{thread:8} {name:22} {count / n:8.3f} {w * 1000 / count:8.3f} {w * 1e6 / n:15.0f}")
    total = sum(stats.values())
    print(f"{'all':8} {'':22} {total / n:8.3f}")
    for label, counter in sizes.items():
        calls = sum(counter.values())
        mean = sum(k * v for k, v in counter.items()) / calls
        top = ", ".join(f"{k}: {v}" for k, v in sorted(counter.items())[:12])
        print(f"\n{label}: {calls} calls, mean {mean:.2f}; histogram {top}")
    if args.yappi:
        import yappi

        print("\nyappi (CPU clock), top 30 functions by own time, all threads:")
        fs = yappi.get_func_stats()
        fs.sort("tsub")
        for s in list(fs)[:30]:
            print(f"{s.tsub * 1e6 / n:8.1f} us/job self {s.ttot * 1e6 / n:8.1f} us/job total "
                  f"{s.ncall:8d} calls  {s.module.rsplit('/', 2)[-1]}:{s.lineno} {s.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
