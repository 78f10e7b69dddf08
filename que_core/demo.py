"""A demonstration of que-core's main job, behind ``que demo``.

It bulk-enqueues a few thousand jobs of a few kinds (quick ones, ones that
sleep a few milliseconds, ones that write a row and destroy themselves in one
transaction, ones that fail once and succeed on retry, and a few that always
fail and are expired), works them with an in-process :class:`~que_core.Worker`
and shows a live progress line, then a summary.

The server is ``--dsn`` / ``$DATABASE_URL``, else the embedded PostgreSQL
(:mod:`que_core.embedded`, data kept between runs). Either way the demo works
in a database of its own, created for the run and dropped at the end.
"""

from __future__ import annotations

import logging
import shutil
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, Any

from que_core.connection import Adapter, Connection
from que_core.dsn import mask_password
from que_core.errors import QueError
from que_core.hookspecs import hookimpl

DEFAULT_JOBS = 3000
DEFAULT_WORKERS = 8
#: Retry delays of the failing kinds: short, so the retries happen during the demo.
FLAKY_RETRY = 1.0
DOOMED_RETRY = 0.5
DOOMED_MAX_RETRIES = 2
LEDGER_TABLE = "que_demo_ledger"

# -- the demo's job classes ---------------------------------------------------
# Defined on first use, so that running this file as __main__ and importing it
# as que_core.demo (or importing que_core.demo without running the demo) does
# not register them.

_kinds: dict[str, type[Any]] = {}


def job_kinds() -> dict[str, type[Any]]:
    """The demo's Job classes by kind, defined on the first call."""
    if _kinds:
        return _kinds
    from que_core.job import Job

    class QuickJob(Job):
        """Returns at once; the worker then deletes the job."""

        job_name = "que_core.demo.QuickJob"

        def run(self, n: int) -> None:
            pass

    class SleepJob(Job):
        """Sleeps a few milliseconds, like a job that waits on something."""

        job_name = "que_core.demo.SleepJob"

        def run(self, n: int, ms: float) -> None:
            time.sleep(ms / 1000)

    class LedgerJob(Job):
        """Writes its effect and destroys itself in one transaction, so the
        row exists exactly once whatever happens to the worker."""

        job_name = "que_core.demo.LedgerJob"

        def run(self, n: int, amount: int) -> None:
            assert self.db is not None
            with self.transaction():
                self.db.execute(
                    f"INSERT INTO {LEDGER_TABLE} (job_id, amount) VALUES (%s, %s)",
                    (self.id, amount),
                )
                self.destroy()

    class FlakyJob(Job):
        """Fails on its first attempt, succeeds when retried."""

        job_name = "que_core.demo.FlakyJob"
        retry_interval = FLAKY_RETRY
        # A retry is due behind the whole backlog in run_at order; a lower
        # priority number lets it run as soon as it is due.
        priority = 50

        def run(self, n: int) -> None:
            if self.error_count == 0:
                raise ConnectionError(f"demo job {n}: first attempt fails on purpose")

    class DoomedJob(Job):
        """Always fails; expired after maximum_retry_count retries."""

        job_name = "que_core.demo.DoomedJob"
        retry_interval = DOOMED_RETRY
        priority = 50
        maximum_retry_count = DOOMED_MAX_RETRIES

        def run(self, n: int) -> None:
            raise ValueError(f"demo job {n}: fails every time (attempt {self.error_count + 1})")

    _kinds.update(
        quick=QuickJob, sleep=SleepJob, ledger=LedgerJob, flaky=FlakyJob, doomed=DoomedJob
    )
    return _kinds


def kind_of(i: int) -> str:
    """The kind of job number *i*: per 100 jobs, 10 flaky, 1 doomed, 30
    sleeping, 20 ledger and 39 quick ones, interleaved."""
    slot = i % 100
    if slot < 10:
        return "flaky"
    if slot < 11:
        return "doomed"
    if slot < 41:
        return "sleep"
    if slot < 61:
        return "ledger"
    return "quick"


def job_args(kind: str, i: int) -> tuple[Any, ...]:
    if kind == "sleep":
        return (i, 2 + i % 5)  # 2-6 ms
    if kind == "ledger":
        return (i, 1 + i % 10)
    return (i,)


# -- counting, from the worker threads through que-core's plugin hooks ----------


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile of *values* (sorted or not); 0 when empty."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * pct // 100))  # ceil
    return ordered[int(rank) - 1]


@dataclass
class Stats:
    """What the worker threads report, read by the display."""

    total: int
    enqueued_at: float = 0.0  # monotonic time the bulk insert committed
    finished_at: float | None = None
    succeeded: int = 0
    succeeded_after_retry: int = 0
    expired: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)  # enqueue -> done, per job
    run_times: list[float] = field(default_factory=list)  # per attempt
    _retrying: set[int] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _done: threading.Event = field(default_factory=threading.Event)

    def _ours(self, job: Any) -> bool:
        return str(getattr(job, "job_class", "")).startswith("que_core.demo.")

    def _completed(self, job: Any) -> None:
        now = time.monotonic()
        self.latencies.append(now - self.enqueued_at)
        self._retrying.discard(job.id)
        if self.succeeded + self.expired >= self.total:
            self.finished_at = now
            self._done.set()

    @hookimpl
    def que_job_succeeded(self, job: Any, duration: float) -> None:
        if not self._ours(job):
            return
        with self._lock:
            self.succeeded += 1
            if job.error_count:
                self.succeeded_after_retry += 1
            self.run_times.append(duration)
            self._completed(job)

    @hookimpl
    def que_job_errored(
        self, job: Any, error: BaseException, duration: float, retry_in: float
    ) -> None:
        if not self._ours(job):
            return
        with self._lock:
            self.errors += 1
            self.run_times.append(duration)
            self._retrying.add(job.id)

    @hookimpl
    def que_job_expired(self, job: Any, error: BaseException, duration: float) -> None:
        if not self._ours(job):
            return
        with self._lock:
            self.errors += 1
            self.expired += 1
            self.run_times.append(duration)
            self._completed(job)

    @property
    def done(self) -> int:
        return self.succeeded + self.expired

    @property
    def retries_waiting(self) -> int:
        return len(self._retrying)

    def wait(self, timeout: float) -> bool:
        return self._done.wait(timeout)


# -- the display ----------------------------------------------------------------


class Progress:
    """One line redrawn in place on a terminal; a line per second otherwise."""

    def __init__(self, stats: Stats, out: IO[str]) -> None:
        self.stats = stats
        self.out = out
        self.tty = out.isatty()
        self.interval = 0.1 if self.tty else 1.0
        self._width = 0
        self._last = (time.monotonic(), 0)
        self._rate = 0.0

    def line(self) -> str:
        s = self.stats
        now = time.monotonic()
        elapsed = now - s.enqueued_at
        done = s.done
        then, done_then = self._last
        if now - then >= 0.5:  # the rate over the last half second or more
            self._rate = (done - done_then) / (now - then)
            self._last = (now, done)
        text = (
            f"[{elapsed:6.1f}s] done {done:>{len(str(s.total))}}/{s.total} | errors {s.errors}"
            f" | retries waiting {s.retries_waiting} | expired {s.expired}"
            f" | {self._rate:.0f}/s"
        )
        if self.tty:  # one terminal line, or \r cannot redraw it
            text = text[: max(20, shutil.get_terminal_size().columns - 1)]
        return text

    def draw(self) -> None:
        text = self.line()
        if self.tty:
            self.out.write("\r" + text.ljust(self._width))
            self._width = len(text)
        else:
            self.out.write(text + "\n")
        self.out.flush()

    def end(self) -> None:
        self.draw()
        if self.tty:
            self.out.write("\n")
            self.out.flush()


# -- the run --------------------------------------------------------------------


class Interrupted(Exception):
    """Ctrl-C or SIGTERM."""


@dataclass
class Setup:
    server_dsn: str
    adapter: Adapter
    db_dsn: str | None = None
    stats: Stats | None = None


def _echo(out: IO[str], text: str = "") -> None:
    out.write(text + "\n")
    out.flush()


def _scalar(conn: Connection, sql: str) -> Any:
    return conn.execute(sql)[0][0]


def run(
    dsn: str | None = None,
    adapter: str | None = None,
    jobs: int = DEFAULT_JOBS,
    workers: int = DEFAULT_WORKERS,
    timeout: float = 120.0,
    out: IO[str] | None = None,
    data_dir: Path | None = None,
) -> int:
    """Run the demo; return the process exit status (0: every job was done).

    Without *dsn* it starts the embedded PostgreSQL on *data_dir* (default:
    :func:`que_core.embedded.default_data_dir`)."""
    out = out or sys.stdout
    from que_core import databases, embedded
    from que_core.plugins import get_adapter

    chosen = get_adapter(adapter)
    _echo(out, "que-core demo")
    if dsn:
        server = dsn
        _echo(out, f"  server    {mask_password(dsn)}")
    else:
        data_dir = data_dir or embedded.default_data_dir()
        _echo(out, f"  server    embedded PostgreSQL (pgserver), data in {data_dir}")
        _echo(out, f"            (kept between runs; ${embedded.ENV_DATA_DIR} moves it) ...")
        started = time.monotonic()
        with warnings.catch_warnings():
            # platformdirs (pgserver's) warns when XDG_RUNTIME_DIR is unset; harmless here.
            warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR")
            server = embedded.start(data_dir)
        _echo(out, f"            up in {time.monotonic() - started:.1f} s")
    setup = Setup(server, chosen)
    previous_term = _install_sigterm()
    try:
        return _run(setup, jobs, workers, timeout, out)
    except (KeyboardInterrupt, Interrupted):
        done = f"{setup.stats.done} of {setup.stats.total} jobs done; " if setup.stats else ""
        _echo(out, f"\ninterrupted: {done}worker stopped; dropping the demo database")
        return 130
    finally:
        if previous_term is not None:
            signal.signal(signal.SIGTERM, previous_term)
        if setup.db_dsn is not None:
            _cleanup_database(setup, out, databases.drop_database)


def _install_sigterm() -> Any:
    if threading.current_thread() is not threading.main_thread():
        return None

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise Interrupted()

    return signal.signal(signal.SIGTERM, on_term)


def _cleanup_database(
    setup: Setup, out: IO[str], drop: Callable[[Adapter, str, str], None]
) -> None:
    assert setup.db_dsn is not None
    name = setup.db_dsn.rsplit("/", 1)[-1].split("?")[0] if "://" in setup.db_dsn else setup.db_dsn
    try:
        drop(setup.adapter, setup.server_dsn, setup.db_dsn)
    except (QueError, KeyboardInterrupt, Interrupted) as exc:
        _echo(out, f"could not drop the demo database {name}: {mask_password(str(exc))}")


def _run(setup: Setup, jobs: int, workers: int, timeout: float, out: IO[str]) -> int:
    from que_core import databases
    from que_core.job import bulk_enqueue
    from que_core.migrations import migrate
    from que_core.plugins import plugin_manager
    from que_core.worker import Worker

    adapter = setup.adapter
    setup.db_dsn = databases.create_database(adapter, setup.server_dsn, prefix="que_demo")
    conn = adapter.connect(setup.db_dsn)
    try:
        version = str(_scalar(conn, "SHOW server_version")).split()[0]
        database = _scalar(conn, "SELECT current_database()")
        migrate(conn)
        conn.execute(f"CREATE TABLE {LEDGER_TABLE} (job_id bigint PRIMARY KEY, amount int)")
        _echo(out, f"  database  {database} on PostgreSQL {version}")
        _echo(out, "            (created and migrated now; dropped at exit)")
        kinds = job_kinds()
        plan = [kind_of(i) for i in range(jobs)]
        counts = {k: plan.count(k) for k in kinds}
        _echo(out, f"  worker    {workers} threads in this process, {adapter.name} adapter")
        w = len(str(jobs))
        _echo(out, f"  jobs      {jobs} in all:")
        for kind, text in (
            ("quick", "quick ones"),
            ("sleep", "sleep 2-6 ms"),
            ("ledger", "insert a row and destroy themselves in one transaction"),
            ("flaky", f"fail once and succeed on retry {FLAKY_RETRY:g} s later"),
            ("doomed", f"always fail: expired after {DOOMED_MAX_RETRIES + 1} attempts"),
        ):
            _echo(out, f"            {counts[kind]:>{w}} {text}")

        stats = setup.stats = Stats(total=jobs)
        pm = plugin_manager()
        pm.register(stats, name=f"que-demo-{id(stats)}")
        que_log = logging.getLogger("que_core")
        log_level = que_log.level
        if que_log.getEffectiveLevel() >= logging.WARNING:
            # Each job error is a warning line, which would break the progress
            # line; the display counts them. A lower level asked for shows them.
            que_log.setLevel(logging.ERROR)
        worker = Worker(
            setup.db_dsn,
            adapter=adapter,
            worker_priorities=[None] * workers,  # every thread takes any priority
            poll_interval=0.1,
        )
        try:
            worker.start()
            _echo(out)
            started = time.monotonic()
            with bulk_enqueue(conn=conn):
                for i, kind in enumerate(plan):
                    kinds[kind].enqueue(*job_args(kind, i), conn=conn)
            stats.enqueued_at = time.monotonic()
            enqueue_time = stats.enqueued_at - started
            _echo(out, f"enqueued {jobs} jobs with bulk_enqueue in {enqueue_time:.2f} s")
            progress = Progress(stats, out)
            deadline = stats.enqueued_at + timeout
            while not stats.wait(progress.interval):
                progress.draw()
                if not worker.running:
                    progress.end()
                    _echo(out, "the worker stopped unexpectedly")
                    return 1
                if time.monotonic() > deadline:
                    progress.end()
                    left = jobs - stats.done
                    _echo(out, f"gave up after {timeout:g} s with {left} jobs not done")
                    return 1
            progress.end()
        finally:
            worker.stop(timeout=10)
            pm.unregister(stats)
            que_log.setLevel(log_level)

        waiting = _scalar(
            conn, "SELECT count(*) FROM que_jobs WHERE finished_at IS NULL AND expired_at IS NULL"
        )
        expired_rows = _scalar(conn, "SELECT count(*) FROM que_jobs WHERE expired_at IS NOT NULL")
        ledger = _scalar(conn, f"SELECT count(*) FROM {LEDGER_TABLE}")
    finally:
        conn.close()
    _summary(stats, enqueue_time, counts, waiting, expired_rows, ledger, out)
    ok = waiting == 0 and expired_rows == counts["doomed"] and ledger == counts["ledger"]
    return 0 if ok else 1


def _summary(
    stats: Stats,
    enqueue_time: float,
    counts: dict[str, int],
    waiting: int,
    expired_rows: int,
    ledger: int,
    out: IO[str],
) -> None:
    wall = (stats.finished_at or time.monotonic()) - stats.enqueued_at
    rate = stats.done / wall if wall > 0 else 0.0
    ms = 1000.0

    def check(ok: bool) -> str:
        return "ok" if ok else "MISMATCH"

    _echo(out)
    _echo(out, "summary")
    _echo(out, f"  worked     {stats.succeeded} jobs succeeded")
    _echo(out, f"  errored    {stats.errors} failed attempts (error saved on the job row)")
    _echo(out, f"  retried    {stats.succeeded_after_retry} jobs succeeded after failing first")
    _echo(out, f"  expired    {stats.expired} jobs (failed {DOOMED_MAX_RETRIES + 1} times)")
    _echo(out, f"  enqueue    {stats.total} jobs in {enqueue_time:.2f} s (one INSERT)")
    _echo(out, f"  wall time  {wall:.2f} s from the enqueue's commit to the last job done")
    _echo(out, f"  rate       {rate:.0f} jobs/s")
    _echo(
        out,
        f"  latency    enqueue -> done p50 {percentile(stats.latencies, 50):.2f} s, "
        f"p99 {percentile(stats.latencies, 99):.2f} s (all enqueued at once: mostly time queued)",
    )
    _echo(
        out,
        f"  run time   per attempt p50 {percentile(stats.run_times, 50) * ms:.2f} ms, "
        f"p99 {percentile(stats.run_times, 99) * ms:.2f} ms",
    )
    _echo(
        out,
        f"  database   {waiting} jobs left to work ({check(waiting == 0)}), "
        f"{expired_rows} expired rows ({check(expired_rows == counts['doomed'])}), "
        f"{ledger} ledger rows for {counts['ledger']} ledger jobs "
        f"({check(ledger == counts['ledger'])})",
    )

