"""CPU-bound jobs: `que work --processes 1` against `--processes 2`, the same
number of threads in total.

    python benchmarks/processes.py                    # 1,000 jobs of ~5 ms, 4 threads, 3 rounds
    python benchmarks/processes.py --rounds 5 --jobs 2000 --threads 4 --ms 5

Each job (``bench.BurnJob``) does pure-Python arithmetic for about --ms
milliseconds: the loop count that takes that long in this process is
measured first, and every job gets it. Threads alone cannot run such jobs
in parallel (the GIL); processes can.

Each round runs both, in alternating order (1 then 2, then 2 then 1, ...).
A run: TRUNCATE que_jobs; --jobs jobs enqueued with run_at an hour ahead
(scheduled: no worker takes them yet); ``que work --processes P -w
THREADS/P -i 0.05`` started (the poll interval is short so that the jobs are
seen at once when they become due); once all P processes are in
que_lockers, ``UPDATE que_jobs SET run_at = now()`` and the clock starts; it
stops at the first ``count(*)`` (every 20 ms) that finds que_jobs empty.
Start-up is not counted for either. Printed: each run, then the median
seconds and jobs/s of each and the ratio of the medians (2 over 1); the
first and last lines name the commit, the CPUs and the load average.
"""

from __future__ import annotations

import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import _common as common
from benchmarks._common import median, table
from benchmarks.noop_jobs import BurnJob, burn
from que_core import plugins

LEFT = "SELECT count(*) FROM que_jobs"


def calibrate(ms: float) -> int:
    """The loop count of :func:`burn` that takes about *ms* milliseconds here
    (the fastest of a few tries: the least disturbed by other processes)."""
    loops = 10_000
    while True:
        best = min(_timed(loops) for _ in range(5))
        if best > 0.02:
            return max(1, int(loops * ms / 1000 / best))
        loops *= 4


def _timed(loops: int) -> float:
    t = time.perf_counter()
    burn(loops)
    return time.perf_counter() - t


def one_run(dsn: str, adapter: str, processes: int, threads: int, jobs: int, loops: int,
            poll: float) -> float:
    """Seconds to drain *jobs* burn jobs with *processes* processes."""
    conn = plugins.get_adapter(adapter).connect(dsn)
    try:
        conn.execute("TRUNCATE que_jobs")
        BurnJob.enqueue_many([[loops]] * jobs, conn=conn.raw, run_at=_later())
        conn.execute("ANALYZE que_jobs")
        common.checkpoint(conn)
        worker = common.WorkerProcess(dsn, adapter, [
            "--processes", str(processes), "--workers", str(threads // processes),
            "--poll-interval", "0.05"])
        try:
            worker.wait_registered(conn, listening=False, sql=(
                f"SELECT (count(*) >= {processes})::int FROM que_lockers"))
            conn.execute("UPDATE que_jobs SET run_at = now()")
            t0 = time.monotonic()
            _, now = worker.wait_drained(lambda: conn.execute(LEFT)[0][0], jobs, t0, poll, 600)
        finally:
            worker.stop()
    finally:
        conn.close()
    return now - t0


def _later() -> datetime:
    return datetime.now(timezone.utc) + timedelta(hours=1)


def main(argv: list[str] | None = None) -> int:
    p = common.parser(__doc__, 1000, every_adapter=False, poll=True, rounds="rounds of both")
    p.add_argument("--ms", type=float, default=5.0, help="CPU per job, ms (default 5)")
    p.add_argument("--threads", type=int, default=4,
                   help="worker threads in total, split between the processes (default 4)")
    args = p.parse_args(argv)
    if args.threads < 2 or args.threads % 2:
        p.error(f"--threads {args.threads}: give an even number, to split between 2 processes")
    server = common.begin(args.dsn)
    loops = calibrate(args.ms)
    print(f"{loops} loops of burn() per job: ~{args.ms:g} ms here", flush=True)
    seconds: dict[int, list[float]] = {1: [], 2: []}
    with common.bench_database(plugins.get_adapter(args.adapter), server) as dsn:
        for n in range(args.rounds):
            for processes in ((1, 2) if n % 2 == 0 else (2, 1)):
                took = one_run(dsn, args.adapter, processes, args.threads, args.jobs, loops,
                               args.poll)
                seconds[processes].append(took)
                print(f"round {n + 1}/{args.rounds}: --processes {processes} -w "
                      f"{args.threads // processes}: {args.jobs} jobs in {took:.2f} s = "
                      f"{args.jobs / took:.0f} jobs/s", flush=True)
    one, two = median(seconds[1]), median(seconds[2])
    print(common.describe(), flush=True)
    print()
    print(table(
        ["processes x threads", "median s", "median jobs/s", "runs (s)"],
        [[f"{pr} x {args.threads // pr}", f"{median(seconds[pr]):.2f}",
          f"{args.jobs / median(seconds[pr]):.0f}", ", ".join(f"{s:.2f}" for s in seconds[pr])]
         for pr in (1, 2)],
    ))
    print(f"\n--processes 2 is {one / two:.2f}x as fast as --processes 1 "
          f"(median over {args.rounds} rounds, {args.jobs} jobs of ~{args.ms:g} ms, "
          f"{args.threads} threads in all)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
