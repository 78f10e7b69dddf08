"""Shared plumbing of the benchmarks: a throwaway database, a worker
subprocess (``que work``), adapter selection."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from que_core import migrate, plugins
from que_core.connection import Adapter, Connection
from que_core.testing import databases

REPO = Path(__file__).resolve().parent.parent
PREFERRED = ("psycopg", "psycopg2", "pg8000")


def exit_cleanly_on_sigterm() -> None:
    """SIGTERM (e.g. from `timeout`) raises SystemExit, so that the finally
    blocks stop the worker and drop the benchmark database."""
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


def parser(doc: str | None, jobs: int, every_adapter: bool, poll: bool,
           rounds: str | None = None, worker_modules: bool = False) -> argparse.ArgumentParser:
    """The flags the drain and latency benchmarks share: --adapter (with
    *every_adapter*, 'all' too), --jobs, --dsn, (with *poll*) --poll, (with
    *rounds*, what a round is) --rounds and (with *worker_modules*) --worker-module."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--adapter", default="psycopg", help="adapter name"
                   + (", or 'all'" if every_adapter else "") + " (default psycopg)")
    p.add_argument("--jobs", type=int, default=jobs, help=f"jobs per run (default {jobs})")
    p.add_argument("--dsn", default=None, help="server to create the database on")
    if poll:
        p.add_argument("--poll", type=float, default=0.02,
                       help="seconds between count(*) polls (default 0.02)")
    if rounds:
        p.add_argument("--rounds", type=int, default=3, help=f"{rounds} (default 3)")
    if worker_modules:
        p.add_argument("--worker-module", action="append", default=[], metavar="MODULE",
                       help="extra module for the worker to import (e.g. one that patches\n"
                       "que_core for an experiment; found through $PYTHONPATH), repeatable")
    return p


def begin(dsn: str | None) -> str:
    """A benchmark's start, once its flags are read: SIGTERM exits cleanly,
    the machine is described; the server to use (see :func:`server_dsn`)."""
    exit_cleanly_on_sigterm()
    server = server_dsn(dsn)
    print(describe(), flush=True)
    return server


def server_dsn(arg: str | None) -> str:
    """--dsn, else $QUE_TEST_DSN / $DATABASE_URL, else the embedded server."""
    return arg or databases.server_dsn()


def adapter_names(arg: str) -> list[str]:
    """``all``: every installed adapter (psycopg, psycopg2, pg8000 first)."""
    if arg != "all":
        plugins.get_adapter(arg)  # fails with the list of installed adapters
        return [arg]
    installed = sorted(plugins.adapters())
    return [n for n in PREFERRED if n in installed] + [n for n in installed if n not in PREFERRED]


@contextlib.contextmanager
def bench_database(adapter: Adapter, server: str) -> Iterator[str]:
    """A new migrated database on *server*, dropped afterwards."""
    db = databases.create_database(adapter, server, prefix="que_bench")
    try:
        conn = adapter.connect(db)
        try:
            migrate(conn)
        finally:
            conn.close()
        yield db
    finally:
        databases.drop_database(adapter, server, db)


def checkpoint(conn: Connection) -> None:
    """Start each run from a fresh checkpoint, so that every run pays the same
    full-page writes (needs superuser or pg_checkpoint; skipped otherwise)."""
    with contextlib.suppress(Exception):
        conn.execute("CHECKPOINT")


class WorkerProcess:
    """One ``python -m que_core.cli work`` process with its default settings
    (plus *extra* flags), logging to a temporary file. *cmd* runs another
    queue's worker instead (benchmarks/compare.py), in the same environment.
    *tree*: the source tree it runs from, first on its import path."""

    def __init__(
        self, dsn: str, adapter: str = "psycopg", extra: Sequence[str] = (),
        modules: Sequence[str] = (), cmd: Sequence[str] | None = None, tree: Path = REPO,
    ) -> None:
        self.log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - lives as long as the worker
            prefix="que_bench_worker_", suffix=".log", delete=False
        )
        env = dict(os.environ)
        env["DATABASE_URL"] = dsn  # not on the command line, where ps would show it
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tree), env.get("PYTHONPATH")]))
        self.cmd = list(cmd) if cmd is not None else [
            sys.executable, "-m", "que_core.cli", "work", "--adapter", adapter,
            *extra, *(modules or ["benchmarks.noop_jobs"]),
        ]
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            self.cmd, cwd=tree, env=env, stdin=subprocess.DEVNULL,
            stdout=self.log, stderr=subprocess.STDOUT,
        )

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(
                f"the worker exited with status {self.proc.returncode}:\n{self.tail()}"
            )

    def tail(self, lines: int = 30) -> str:
        text = Path(self.log.name).read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def wait_registered(
        self, conn: Connection, listening: bool, timeout: float = 60.0, sql: str | None = None
    ) -> float:
        """Wait for the locker's row in que_lockers (and, with *listening*, for
        its listener), or until the count *sql* returns is not 0; return
        time.monotonic() when it was seen."""
        if sql is None:
            sql = "SELECT count(*) FROM que_lockers" + (" WHERE listening" if listening else "")
        query = sql
        return self.wait_count(
            lambda: int(conn.execute(query)[0][0]), 1, timeout, interval=0.005,
            failure=lambda n: f"the worker did not register in {timeout:g} s:\n{self.tail()}")

    def wait_count(
        self, count: Callable[[], int], at_least: int, timeout: float,
        failure: Callable[[int], str], interval: float = 0.05,
    ) -> float:
        """Poll *count* until it is *at_least*, while the worker lives; return
        time.monotonic() then. After *timeout* s: TimeoutError(failure(count))."""
        deadline = time.monotonic() + timeout
        while (n := count()) < at_least:
            self.check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(failure(n))
            time.sleep(interval)
        return time.monotonic()

    def wait_drained(
        self, left: Callable[[], int], jobs: int, since: float, poll: float, limit: float,
        what: str = "",
    ) -> tuple[float | None, float]:
        """Poll *left* (the jobs not done yet) every *poll* s until it is 0; return
        time.monotonic() when fewer than *jobs* were left first (None if never
        seen) and when none were. More than *limit* s after *since* is an error."""
        first = None
        while True:
            n = left()
            now = time.monotonic()
            if first is None and n < jobs:
                first = now
            if n == 0:
                return first, now
            self.check_alive()
            if now - since > limit:
                raise TimeoutError(f"{what}{n} jobs left after {limit:g} s")
            time.sleep(poll)

    def stop(self, timeout: float = 60.0) -> None:
        try:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
        finally:
            self.log.close()
            with contextlib.suppress(OSError):
                os.unlink(self.log.name)


_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(pid: int) -> float | None:
    """user + system CPU seconds of process *pid* (all its threads), from
    /proc; None when it cannot be read (not Linux, another host)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / _TICK


def peak_rss_mb(pid: int) -> float | None:
    """The peak resident set size of process *pid* so far (VmHWM), in MB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def describe() -> str:
    """One line about what is measured where: que_core's commit, the machine."""
    import platform

    import que_core

    where = Path(que_core.__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(where), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(where), "status", "--porcelain", "--", "que_core", "que_adapters"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()
        commit += "+uncommitted changes" if dirty else ""
    except (OSError, subprocess.CalledProcessError):
        commit = "not a git checkout"
    load = " ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return (
        f"que_core from {where} ({commit}); Python {platform.python_version()}; "
        f"{os.cpu_count()} CPUs, load average {load}"
    )


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table."""
    cells = [list(map(str, headers))] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["| " + " | ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) + " |"
             for r in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 1) + ":" for w in widths) + "|")
    return "\n".join(lines)
