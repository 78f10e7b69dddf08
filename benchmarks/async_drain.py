"""The async def drain alone, for one or more source trees, alternating: CPU
per job of the worker process and of its Postgres backends.

    python benchmarks/async_drain.py                          # this tree, 3 rounds
    python benchmarks/async_drain.py --tree /tmp/base --tree . --rounds 3
    (/tmp/base: e.g. ``git archive <commit> | tar -x -C /tmp/base``)

Each tree gets a database of its own (created and migrated by that tree's
code: two trees may be at different schema revisions). A round drains
--jobs AsyncNoopJob rows once per tree, in turn, with ``que work`` at its
defaults (run from the tree, which comes first on its import path), the
clock and the CPU counted from the worker's registration to the empty
queue, as compare.py's drain does. CPU per job is steadier than jobs/s on a
shared machine: the medians over the rounds are printed last.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import _common as common
from benchmarks._common import median
from que_core import plugins
from que_core.connection import Connection
from que_core.testing import databases

ADAPTER = "psycopg"


def in_tree(tree: Path, code: str, dsn: str) -> None:
    """Run Python *code* with *tree*'s que_core (migrate, fill)."""
    env = dict(os.environ, DATABASE_URL=dsn, PYTHONPATH=str(tree))
    subprocess.run([sys.executable, "-c", code], cwd=tree, env=env, check=True)


MIGRATE = ("import os; from que_core import migrate, plugins; "
           "c = plugins.get_adapter('psycopg').connect(os.environ['DATABASE_URL']); migrate(c)")
FILL = ("import os, sys; from que_core import plugins; from benchmarks.noop_jobs import "
        "AsyncNoopJob; c = plugins.get_adapter('psycopg').connect(os.environ['DATABASE_URL']); "
        "c.execute('TRUNCATE que_jobs')\n"
        "for s in range(0, {n}, 10000):\n"
        "    AsyncNoopJob.enqueue_many([[i] for i in range(s, min({n}, s + 10000))], conn=c.raw)\n"
        "c.execute('ANALYZE que_jobs')")
SESSIONS = ("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()")


XACTS = ("SELECT xact_commit + xact_rollback FROM pg_stat_database "
         "WHERE datname = current_database()")


def xacts(conn: Connection) -> int:
    conn.execute("SELECT pg_stat_clear_snapshot()")
    return int(conn.execute(XACTS)[0][0])


def one_drain(tree: Path, dsn: str, jobs: int, poll: float, modules: list[str]
              ) -> tuple[float, float, float, float]:
    """jobs/s, worker CPU µs/job, Postgres CPU µs/job, transactions per job
    (the worker's statements are each its own: round trips, about)."""
    in_tree(tree, FILL.format(n=jobs), dsn)
    conn = plugins.get_adapter(ADAPTER).connect(dsn)
    try:
        common.checkpoint(conn)
        x0 = xacts(conn)
        worker = common.WorkerProcess(dsn, ADAPTER, modules=["benchmarks.noop_jobs", *modules],
                                      tree=tree)
        try:
            t0 = worker.wait_registered(conn, listening=False)
            backends = {int(p) for (p,) in conn.execute(SESSIONS)}
            cpu0 = common.cpu_seconds(worker.proc.pid) or 0.0
            pg0 = {p: common.cpu_seconds(p) or 0.0 for p in backends}
            _, t1 = worker.wait_drained(
                lambda: int(conn.execute("SELECT count(*) FROM que_jobs")[0][0]),
                jobs, t0, poll, 600)
            cpu1 = common.cpu_seconds(worker.proc.pid) or 0.0
            pids = {int(p) for (p,) in conn.execute(SESSIONS)}
            pg1 = {p: common.cpu_seconds(p) or 0.0 for p in pids}
        finally:
            worker.stop()
        time.sleep(0.5)  # the worker's sessions' statistics flushed as they ended
        x1 = xacts(conn)
    finally:
        conn.close()
    pg = sum(c - pg0.get(p, 0.0) for p, c in pg1.items())
    return jobs / (t1 - t0), (cpu1 - cpu0) * 1e6 / jobs, pg * 1e6 / jobs, (x1 - x0) / jobs


def main(argv: list[str] | None = None) -> int:
    p = common.parser(__doc__, 10_000, every_adapter=False, poll=True,
                      rounds="rounds, each tree in turn", worker_modules=True)
    p.add_argument("--tree", action="append", type=Path, default=[],
                   help="a source tree to measure (repeatable; default: this one)")
    args = p.parse_args(argv)
    server = common.begin(args.dsn)
    trees = [t.resolve() for t in args.tree] or [common.REPO]
    adapter = plugins.get_adapter(ADAPTER)
    dsns = [databases.create_database(adapter, server, prefix="que_bench") for _ in trees]
    results: dict[Path, list[tuple[float, float, float, float]]] = {t: [] for t in trees}
    try:
        for tree, dsn in zip(trees, dsns, strict=True):
            in_tree(tree, MIGRATE, dsn)
        for r in range(1, args.rounds + 1):
            for tree, dsn in zip(trees, dsns, strict=True):
                rate, cw, cp, xs = one_drain(tree, dsn, args.jobs, args.poll, args.worker_module)
                results[tree].append((rate, cw, cp, xs))
                print(f"round {r} {tree}: {rate:,.0f} jobs/s; CPU per job: worker {cw:.0f} µs, "
                      f"postgres {cp:.0f} µs; {xs:.2f} transactions per job "
                      f"(load {os.getloadavg()[0]:.1f})", flush=True)
    finally:
        for dsn in dsns:
            databases.drop_database(adapter, server, dsn)
    print(common.describe(), flush=True)
    for tree, rs in results.items():
        print(f"median {tree}: {median([x[0] for x in rs]):,.0f} jobs/s; CPU per job: worker "
              f"{median([x[1] for x in rs]):.0f} µs, postgres {median([x[2] for x in rs]):.0f} µs; "
              f"{median([x[3] for x in rs]):.2f} transactions per job")
    return 0


if __name__ == "__main__":
    sys.exit(main())
