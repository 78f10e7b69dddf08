"""Scale with work: the drain rate with 1,000,000 jobs waiting against 20,000.

    python benchmarks/scale.py                       # psycopg, 3 rounds
    python benchmarks/scale.py --jobs 1000000 --small 20000 --rounds 3

Each round drains --small jobs, then --jobs jobs, with drain.py's run (one
``que work`` process at its defaults, INFO logging; the clock starts once
the worker has registered; the queue is filled with enqueue_many, ANALYZEd
and CHECKPOINTed first). The large drain's count(*) polls come each
--large-poll seconds (0.5): a count of a million rows every 20 ms would load
the server it measures; 0.5 s is under 1% of that drain. Printed: each run's
rate, CPU per job and the worker's peak RSS (VmHWM over the whole run), then the medians and the
median of the per-round ratios (large rate / small rate).
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import _common as common
from benchmarks._common import median
from benchmarks.drain import one_run
from que_core import plugins


def main(argv: list[str] | None = None) -> int:
    p = common.parser(__doc__, 1_000_000, every_adapter=False, poll=True,
                      rounds="alternating pairs")
    p.add_argument("--small", type=int, default=20_000, help="jobs of the small drain (20,000)")
    p.add_argument("--large-poll", type=float, default=0.5,
                   help="seconds between count(*) polls of the large drain (0.5)")
    args = p.parse_args(argv)
    server = common.begin(args.dsn)
    runs: dict[int, list[dict[str, float]]] = {args.small: [], args.jobs: []}
    with common.bench_database(plugins.get_adapter(args.adapter), server) as dsn:
        for rnd in range(1, args.rounds + 1):
            for jobs in (args.small, args.jobs):
                poll = args.poll if jobs == args.small else args.large_poll
                r = one_run(dsn, args.adapter, jobs, [], poll)
                runs[jobs].append(r)
                print(f"round {rnd}/{args.rounds}: {jobs:,} jobs in {r['seconds']:.2f} s = "
                      f"{r['rate']:,.0f} jobs/s; CPU per job: worker {r['cpu_worker']:.0f} us, "
                      f"postgres {r['cpu_pg']:.0f} us; worker peak RSS "
                      f"{r['peak_rss_mb']:.1f} MB", flush=True)
    pairs = zip(runs[args.small], runs[args.jobs], strict=True)
    ratios = [big["rate"] / small["rate"] for small, big in pairs]
    print(common.describe(), flush=True)
    for jobs, rs in runs.items():
        print(f"{jobs:>9,} jobs: median {median([r['rate'] for r in rs]):,.0f} jobs/s, "
              f"worker {median([r['cpu_worker'] for r in rs]):.0f} us/job, "
              f"postgres {median([r['cpu_pg'] for r in rs]):.0f} us/job, "
              f"peak RSS max {max(r['peak_rss_mb'] for r in rs):.1f} MB")
    print(f"{args.jobs:,} / {args.small:,} rate: median of per-round ratios "
          f"{median(ratios):.2f} (rounds: {', '.join(f'{x:.2f}' for x in ratios)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
