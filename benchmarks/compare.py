"""que-core and its peers, pgqueuer and procrastinate, side by side on one server.

    python benchmarks/compare.py                          # everything, 3 rounds
    python benchmarks/compare.py --jobs 2000 --rounds 1   # a quick look
    python benchmarks/compare.py --only drain,latency --systems que-core,pgqueuer
    python benchmarks/compare.py --json results.json

The peers are installed from PyPI at the versions in PINS into a venv of their
own (--peers-venv, default benchmarks/.peers/), made on first use and made again
when PINS change. Each system gets its own database on the server (--dsn, else
$QUE_TEST_DSN / $DATABASE_URL, else the embedded PostgreSQL), unique name,
schema installed by the system's own tool, dropped at the end. Everything a
system does runs in subprocesses of its interpreter: its driver
(benchmarks/systems/NAME_bench.py) enqueues, its own worker command works.

Measurements (--only), each per round and system, alternating systems within
a round (que-core, pgqueuer, procrastinate, then the next measurement):

* drain: --jobs no-op jobs are inserted in bulk, then ONE worker process at its
  defaults is started. The clock starts when the worker is ready (its row in
  que_lockers / procrastinate_workers; for pgqueuer, which registers nowhere,
  its first dequeue statement seen in pg_stat_activity) and stops at the first count of
  unfinished jobs (every --poll s) that is 0. jobs/s; CPU per job (user+system,
  /proc) of the worker process and of its PostgreSQL backends
  (pg_stat_activity), both counted from the ready point on.
* latency: an idle worker, --latency-jobs jobs enqueued --spacing s apart,
  each a single-row enqueue on sync psycopg in autocommit. Latency = the job's
  time.time() on entering its function - time.time() just before the enqueue
  call (same host). p50 and p99, nearest rank.
* single: --single-jobs enqueues, one transaction each, per enqueue driver.
* bulk: --bulk-jobs jobs in one transaction (one statement), per driver.

Printed: one line per run, then one Markdown table of the medians over the
rounds, with que-core / peer for each metric: the median of the ratios within
each round (below 1 is better for CPU and latency, above 1 for rates).
--json PATH writes the table and every run.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import _common as common
from benchmarks._common import REPO, median, table
from benchmarks.latency import percentile
from benchmarks.noop_jobs import LATENCY_TABLE
from que_core import plugins
from que_core.connection import Connection
from que_core.testing import databases

ADAPTER = plugins.get_adapter("psycopg")  # this process's own sessions

#: The peers and their drivers, pinned (psycopg at the version in que-core's
#: .venv). typer < 0.29 because `pgq run` of pgqueuer 1.6.0 fails on 0.29
#: ("'str' object has no attribute 'name'" while it sets up logging).
PINS = (
    "pgqueuer[asyncpg,psycopg]==1.6.0",
    "procrastinate==3.10.0",
    "asyncpg==0.32.0",
    "psycopg[binary,pool]==3.3.9",
    "psycopg-pool==3.3.3",
    "uvloop==0.23.0",
    "typer==0.28.0",
)

SESSIONS = ("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND backend_type = 'client backend'")

PGQUEUER_DEQUEUING = ("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                      "AND pid <> pg_backend_pid() AND query LIKE '%FOR UPDATE SKIP LOCKED%'")


@functools.cache
def peers_python(venv: Path) -> str:
    """The peers' venv's interpreter; the venv is made when missing or when
    its stamp does not list exactly PINS."""
    py, stamp = venv / "bin" / "python", venv / "pins.txt"
    want = "\n".join(PINS) + "\n"
    if not (py.exists() and stamp.exists() and stamp.read_text() == want):
        print(f"making the peers' venv {venv}: {' '.join(PINS)}", flush=True)
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-qq",
                        "--disable-pip-version-check", *PINS], check=True)
        stamp.write_text(want)
    return str(py)


@dataclass(frozen=True)
class System:
    """One queue as compare.py drives it. SQL strings return one count."""

    name: str
    about: str  # for the legend under the table
    driver: str  # module run with ``python -m``: benchmarks/systems/_driver.py
    worker: tuple[str, ...] | None  # after ``python``; None: que work (common.WorkerProcess)
    install: tuple[str, ...] | None  # after ``python``; None: que_core.migrate
    ready: str  # not 0 once the worker is ready to work
    listening: str  # not 0 once it also listens for new jobs
    left: str  # jobs not yet done
    reset: str  # empties the queue's tables (and bench_latency)
    #: drains to run: row variant -> the driver's --kind of job ("" = the no-op job)
    drains: dict[str, str] = field(default_factory=lambda: {"": "noop"})
    #: drivers to enqueue with (single, bulk); the first is the system's reference
    drivers: tuple[str, ...] = ("psycopg",)
    peer: bool = True

    def python(self, args: argparse.Namespace) -> str:
        return peers_python(args.peers_venv) if self.peer else sys.executable


SYSTEMS = {s.name: s for s in (
    System(
        name="que-core",
        about="`que work --adapter psycopg` at its defaults (INFO text log, one line per job); "
              "NoopJob (`def run`, on its 6 threads); async def: AsyncNoopJob (`async def run`, "
              "on its event loop, --async-concurrency 10)",
        driver="benchmarks.systems.que_core_bench",
        worker=None,
        install=None,
        ready="SELECT count(*) FROM que_lockers",
        listening="SELECT count(*) FROM que_lockers WHERE listening",
        left="SELECT count(*) FROM que_jobs",
        reset="TRUNCATE que_jobs, que_lockers, bench_latency",
        # async def: AsyncNoopJob, on the worker's event loop (--async-concurrency 10)
        drains={"": "noop", "async def": "async_noop"},
        peer=False,
    ),
    System(
        name="pgqueuer",
        about="pgqueuer 1.6.0, `pgq run` at its defaults (asyncpg, batch size 10, INFO log: "
              "nothing per job); `async def` no-op entrypoint",
        driver="benchmarks.systems.pgqueuer_bench",
        worker=("-m", "pgqueuer", "run", "benchmarks.systems.pgqueuer_bench:create_pgqueuer"),
        install=("-m", "pgqueuer", "install"),
        # it registers nowhere: ready at its first dequeue, past its schema checks and LISTEN
        ready=PGQUEUER_DEQUEUING,
        listening=PGQUEUER_DEQUEUING,
        left="SELECT count(*) FROM pgqueuer",
        reset="TRUNCATE pgqueuer, pgqueuer_log, pgqueuer_statistics, bench_latency",
        drivers=("psycopg", "asyncpg"),
    ),
    System(
        name="procrastinate",
        about="procrastinate 3.10.0, `procrastinate worker` at its defaults (psycopg, "
              "concurrency 1, INFO log: two lines per job); `async def` no-op task",
        driver="benchmarks.systems.procrastinate_bench",
        worker=("-m", "procrastinate", "--app", "benchmarks.systems.procrastinate_app.app",
                "worker"),
        install=("-m", "procrastinate", "--app", "benchmarks.systems.procrastinate_app.app",
                 "schema", "--apply"),
        ready="SELECT count(*) FROM procrastinate_workers",
        listening="SELECT count(*) FROM procrastinate_workers",
        left="SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing')",
        reset="TRUNCATE procrastinate_workers, procrastinate_jobs, bench_latency CASCADE",
    ),
)}

#: metric -> (label in the table, format of a value)
METRICS = {
    "drain_rate": ("drain: jobs/s", "{:,.0f}"),
    "drain_worker_cpu": ("drain: worker CPU µs/job", "{:,.0f}"),
    "drain_pg_cpu": ("drain: Postgres CPU µs/job", "{:,.0f}"),
    "latency_p50": ("pickup latency p50, ms", "{:.2f}"),
    "latency_p99": ("pickup latency p99, ms", "{:.2f}"),
    "single": ("enqueue single: jobs/s", "{:,.0f}"),
    "bulk": ("enqueue bulk: jobs/s", "{:,.0f}"),
}


@dataclass
class Run:
    """What one measurement gives: metric -> value, per variant."""

    system: str
    variant: str
    values: dict[str, float]
    line: str
    round: int = 0  # set by main()


def environment(dsn: str) -> dict[str, str]:
    env = dict(os.environ, DATABASE_URL=dsn, PGDSN=dsn)  # in the environment, not in ps
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def run(cmd: list[str], dsn: str) -> str:
    """Run *cmd* on database *dsn*; its stdout, or an error with its output."""
    out = subprocess.run(cmd, cwd=REPO, env=environment(dsn), capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"{' '.join(cmd)} exited with {out.returncode}:\n"
                           f"{out.stdout[-2000:]}{out.stderr[-3000:]}")
    return out.stdout


def drive(system: System, args: argparse.Namespace, dsn: str, *argv: str) -> Any:
    """Run the system's driver with *argv*; return the JSON value it printed."""
    out = run([system.python(args), "-m", system.driver, *argv], dsn)
    return json.loads(out.splitlines()[-1])


@contextlib.contextmanager
def database(system: System, args: argparse.Namespace, server: str) -> Iterator[str]:
    """A database of the system's own, with its schema and bench_latency."""
    if system.install is None:
        with common.bench_database(ADAPTER, server) as dsn:
            _create_latency_table(dsn)
            yield dsn
        return
    dsn = databases.create_database(ADAPTER, server, prefix="que_bench")
    try:
        run([system.python(args), *system.install], dsn)
        _create_latency_table(dsn)
        yield dsn
    finally:
        databases.drop_database(ADAPTER, server, dsn)


def _create_latency_table(dsn: str) -> None:
    conn = ADAPTER.connect(dsn)
    try:
        conn.execute(LATENCY_TABLE)
    finally:
        conn.close()


def start_worker(system: System, args: argparse.Namespace, dsn: str) -> common.WorkerProcess:
    cmd = None if system.worker is None else [system.python(args), *system.worker]
    return common.WorkerProcess(dsn, cmd=cmd)


def count(conn: Connection, sql: str) -> int:
    ((n,),) = conn.execute(sql)
    return int(n)


def backend_cpu(conn: Connection) -> dict[int, float]:
    """CPU seconds of every other client session on this database, by pid."""
    cpu = {int(pid): common.cpu_seconds(int(pid)) for (pid,) in conn.execute(SESSIONS)}
    return {pid: c for pid, c in cpu.items() if c is not None}


def drain(system: System, args: argparse.Namespace, dsn: str, conn: Connection) -> list[Run]:
    runs = []
    for variant, kind in system.drains.items():
        n = args.jobs
        conn.execute(system.reset)
        drive(system, args, dsn, "fill", str(n), "--kind", kind)
        if count(conn, system.left) != n:
            raise RuntimeError(f"{system.name}: fill left {count(conn, system.left)} jobs, not {n}")
        conn.execute("ANALYZE")
        common.checkpoint(conn)
        worker = start_worker(system, args, dsn)
        try:
            t0 = worker.wait_registered(conn, listening=False, sql=system.ready)
            cpu0, pg0 = common.cpu_seconds(worker.proc.pid), backend_cpu(conn)
            first, t1 = worker.wait_drained(lambda: count(conn, system.left), n, t0, args.poll,
                                            1800, what=f"{system.name}: ")
            cpu1, pg1 = common.cpu_seconds(worker.proc.pid), backend_cpu(conn)
        finally:
            worker.stop()
        rate = n / (t1 - t0)
        cpu_w = (cpu1 - cpu0) * 1e6 / n if cpu0 is not None and cpu1 is not None else float("nan")
        cpu_pg = sum(c - pg0.get(pid, 0.0) for pid, c in pg1.items()) * 1e6 / n
        gone = len(pg0.keys() - pg1.keys())
        missed = f"; {gone} of its sessions ended during the drain, their CPU is missed"
        runs.append(Run(system.name, variant, {
            "drain_rate": rate, "drain_worker_cpu": cpu_w, "drain_pg_cpu": cpu_pg,
            "drain_seconds": t1 - t0, "startup_seconds": t0 - worker.started,
            "first_done_seconds": (first or t1) - t0,
        }, f"drain {kind}: {n} jobs in {t1 - t0:.2f} s = {rate:,.0f} jobs/s; CPU per job: "
           f"worker {cpu_w:.0f} µs, postgres {cpu_pg:.0f} µs (ready {t0 - worker.started:.2f} s "
           f"after start, first job done {((first or t1) - t0) * 1000:.0f} ms after ready"
           f"{missed if gone else ''})"))
    return runs


def latency(system: System, args: argparse.Namespace, dsn: str, conn: Connection) -> list[Run]:
    n = args.latency_jobs
    conn.execute(system.reset)
    worker = start_worker(system, args, dsn)
    try:
        worker.wait_registered(conn, listening=True, sql=system.listening)
        time.sleep(1.0)  # past the start-up: an idle worker
        times = drive(system, args, dsn, "latency", str(n), "--spacing", str(args.spacing))
        worker.wait_count(
            lambda: count(conn, "SELECT count(*) FROM bench_latency"), n, 60,
            lambda _: f"{system.name}: not all of {n} latency jobs started in 60 s")
    finally:
        worker.stop()
    started: dict[int, float] = dict(conn.execute("SELECT seq, started_host FROM bench_latency"))
    ms = sorted((float(started[seq]) - b) * 1000 for seq, (b, _) in enumerate(times))
    after = sorted((float(started[seq]) - a) * 1000 for seq, (_, a) in enumerate(times))
    enq = sorted((a - b) * 1000 for b, a in times)
    v = {"latency_p50": percentile(ms, 0.50), "latency_p99": percentile(ms, 0.99),
         "latency_max": ms[-1], "enqueue_call_p50": percentile(enq, 0.50),
         "after_enqueue_p50": percentile(after, 0.50), "after_enqueue_p99": percentile(after, 0.99)}
    return [Run(system.name, "", v,
                f"latency: {n} jobs {args.spacing * 1000:g} ms apart: p50 {v['latency_p50']:.2f} "
                f"ms, p99 {v['latency_p99']:.2f} ms, max {ms[-1]:.2f} ms (the enqueue call: p50 "
                f"{v['enqueue_call_p50']:.2f} ms; from its return: p50 "
                f"{v['after_enqueue_p50']:.2f}, p99 {v['after_enqueue_p99']:.2f} ms)")]


def enqueue(command: str) -> Callable[[System, argparse.Namespace, str, Connection], list[Run]]:
    def measure(system: System, args: argparse.Namespace, dsn: str, conn: Connection) -> list[Run]:
        n = args.single_jobs if command == "single" else args.bulk_jobs
        runs = []
        for driver in system.drivers:
            conn.execute(system.reset)
            common.checkpoint(conn)
            seconds = drive(system, args, dsn, command, str(n), "--driver", driver)
            if count(conn, system.left) != n:
                raise RuntimeError(f"{system.name} {command}: {count(conn, system.left)} jobs "
                                   f"in the queue, not {n}")
            runs.append(Run(system.name, driver, {command: n / seconds},
                            f"enqueue {command} ({driver}): {n} jobs in {seconds:.2f} s = "
                            f"{n / seconds:,.0f} jobs/s"))
        return runs
    return measure


MEASUREMENTS = {"drain": drain, "latency": latency,
                "single": enqueue("single"), "bulk": enqueue("bulk")}


Series = dict[tuple[str, str, str], dict[int, float]]  # (metric, system, variant) -> by round


def series(runs: list[Run]) -> Series:
    out: Series = {}
    for r in runs:
        for metric, v in r.values.items():
            out.setdefault((metric, r.system, r.variant), {})[r.round] = v
    return out


def summary(data: Series, systems: list[System]) -> tuple[list[str], list[list[str]]]:
    """The table: one row per metric and variant; per system the median over
    the rounds; then que-core / peer, the median of the ratios within each
    round (the two ran minutes apart, so they share that round's load). A
    system without the row's variant shows its reference variant (its first),
    named in brackets unless it is ""."""
    names = [s.name for s in systems]
    peers = [n for n in names if n != "que-core"] if "que-core" in names else []
    headers = ["", *names, *(f"que-core / {p}" for p in peers)]
    rows = []
    for metric, (label, fmt) in METRICS.items():
        for variant in dict.fromkeys(v for (m, s, v) in data if m == metric):
            cells: dict[str, tuple[str, dict[int, float]] | None] = {}
            for name in names:
                have = [v for (m, s, v) in data if m == metric and s == name]
                pick = variant if variant in have else (have[0] if have else None)
                cells[name] = None if pick is None else (pick, data[(metric, name, pick)])
            row = [f"{label}, {variant}" if variant else label]
            for name in names:
                cell = cells[name]
                row.append("-" if cell is None else fmt.format(median(list(cell[1].values())))
                           + (f" ({cell[0]})" if cell[0] and cell[0] != variant else ""))
            for p in peers:
                q, c = cells["que-core"], cells[p]
                qr, cr = (q[1], c[1]) if q and c else ({}, {})
                ratios = [qr[r] / cr[r] for r in qr if cr.get(r)]
                row.append(f"{median(ratios):.2f}x" if ratios else "-")
            rows.append(row)
    return headers, rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    p.add_argument("--only", default=",".join(MEASUREMENTS),
                   help=f"measurements, comma-separated (default {','.join(MEASUREMENTS)})")
    p.add_argument("--systems", default=",".join(SYSTEMS),
                   help=f"systems, comma-separated (default {','.join(SYSTEMS)})")
    p.add_argument("--jobs", type=int, default=20_000, help="jobs per drain (default 20000)")
    p.add_argument("--latency-jobs", type=int, default=200, help="default 200")
    p.add_argument("--spacing", type=float, default=0.02,
                   help="seconds between latency enqueues (default 0.02)")
    p.add_argument("--single-jobs", type=int, default=2_000, help="default 2000")
    p.add_argument("--bulk-jobs", type=int, default=100_000, help="default 100000")
    p.add_argument("--poll", type=float, default=0.02,
                   help="seconds between counts of the jobs left in a drain (default 0.02)")
    p.add_argument("--dsn", default=None, help="server to create the databases on")
    p.add_argument("--peers-venv", type=Path, default=Path(__file__).resolve().parent / ".peers",
                   help="the peers' venv (default benchmarks/.peers)")
    p.add_argument("--json", type=Path, default=None, metavar="PATH",
                   help="write the table and every run's figures here")
    args = p.parse_args(argv)
    only = args.only.split(",")
    if bad := [m for m in only if m not in MEASUREMENTS]:
        p.error(f"unknown measurement {', '.join(bad)}; choose from {', '.join(MEASUREMENTS)}")
    if bad := [s for s in args.systems.split(",") if s not in SYSTEMS]:
        p.error(f"unknown system {', '.join(bad)}; choose from {', '.join(SYSTEMS)}")
    systems = [SYSTEMS[s] for s in args.systems.split(",")]
    common.exit_cleanly_on_sigterm()

    server = common.server_dsn(args.dsn)
    for s in systems:
        s.python(args)  # makes the peers' venv now, not between two measurements
    start = common.describe()
    print(start, flush=True)
    runs: list[Run] = []
    raw: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack:
        dsns = {s.name: stack.enter_context(database(s, args, server)) for s in systems}
        conns = {}
        for s in systems:
            conns[s.name] = ADAPTER.connect(dsns[s.name])
            stack.callback(conns[s.name].close)
        for rnd in range(1, args.rounds + 1):
            for m in only:
                for s in systems:
                    for r in MEASUREMENTS[m](s, args, dsns[s.name], conns[s.name]):
                        r.round = rnd
                        runs.append(r)
                        raw.append({"round": rnd, "system": r.system, "measurement": m,
                                    "variant": r.variant, **r.values})
                        print(f"round {rnd}/{args.rounds} {s.name}: {r.line}", flush=True)
    end = common.describe()
    print(end)
    data = series(runs)
    headers, rows = summary(data, systems)
    text = table(headers, rows)
    legend = "\n".join(f"- {s.name}: {s.about}" for s in systems)
    print(f"\nMedians over {args.rounds} round(s); que-core / peer: the median of the "
          f"ratios within each round, above 1 is better for jobs/s, below 1 for CPU and "
          f"latency.\n\n{text}\n\n{legend}")
    if args.json:
        args.json.write_text(json.dumps({
            "argv": sys.argv[1:], "pins": PINS, "started": start, "finished": end,
            "settings": {k: str(v) for k, v in vars(args).items() if k != "dsn"},  # no password
            "table": text, "headers": headers, "rows": rows,
            "medians": [{"metric": m, "system": sy, "variant": v,
                         "median": median(list(x.values()))} for (m, sy, v), x in data.items()],
            "runs": raw,
        }, indent=1, ensure_ascii=False) + "\n")
        print(f"\nwritten to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
