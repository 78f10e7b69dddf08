"""Shared machinery of the reliability suite: the scale, the bookkeeping
tables, the invariant checks, worker subprocesses and the results file.

Bookkeeping (written by the jobs of :mod:`tests.reliability.rjobs` through
their own sessions, and by the tests):

``rel_expected``  every job a case enqueued (the "nothing lost" baseline);
``rel_runs``      one row per run, written when the run starts (its own
                  statement, so it survives a crash), with the OS pid, the
                  thread and the backend pid of the job's session;
``rel_ends``      the end of a run: in the transaction that writes the effect
                  and destroys the job, or just before the run raises;
``rel_effects``   the job's effect, in the same transaction as ``destroy()``;
``rel_faults``    what a case broke and when (server clock): a killed
                  process, a terminated backend, a server restart.

A run ends at its end row, or at the first fault that can have ended it
before that (its process killed, its backend terminated, the server
restarted), whichever comes first: after such a fault its session is gone
and nothing it does can commit. A run that raised writes its end on a side
session of its own (rjobs.end_raised). Two runs of one job whose intervals
overlap are a double run.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from conformance.fixtures import scalar
from que_core.connection import Adapter, Connection

ROOT = Path(__file__).resolve().parents[2]

#: ``QUE_RELIABILITY=full``: the heavy version (more processes, jobs, kills,
#: 1,000,000 waiting jobs). Default: a short version of every case.
FULL = os.environ.get("QUE_RELIABILITY", "").strip().lower() == "full"
SCALE = "full" if FULL else "default"

#: Where each case appends its figures (one JSON object per line); unset: nowhere.
RESULTS_ENV = "QUE_RELIABILITY_RESULTS"


def scaled(default: Any, full: Any) -> Any:
    return full if FULL else default


def seeded_rng() -> tuple[random.Random, int]:
    """A random source for a case's fault schedule, and its seed:
    ``QUE_RELIABILITY_SEED`` replays a failed run's schedule. The seed is
    printed, so pytest shows it beside a failure."""
    given = os.environ.get("QUE_RELIABILITY_SEED", "").strip()
    seed = int(given) if given else random.SystemRandom().randrange(2**32)
    print(f"QUE_RELIABILITY_SEED={seed}")
    return random.Random(seed), seed


TABLES = """
CREATE TABLE IF NOT EXISTS rel_expected (
  job_id bigint PRIMARY KEY,
  kind text NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS rel_runs (
  run text PRIMARY KEY,
  job_id bigint NOT NULL,
  os_pid int NOT NULL,
  thread text NOT NULL,
  backend_pid int NOT NULL,
  started_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX IF NOT EXISTS rel_runs_job ON rel_runs (job_id);
CREATE TABLE IF NOT EXISTS rel_ends (
  run text NOT NULL,
  job_id bigint NOT NULL,
  outcome text NOT NULL,
  ended_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX IF NOT EXISTS rel_ends_run ON rel_ends (run);
CREATE TABLE IF NOT EXISTS rel_effects (
  job_id bigint NOT NULL,
  run text NOT NULL,
  at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX IF NOT EXISTS rel_effects_job ON rel_effects (job_id);
CREATE TABLE IF NOT EXISTS rel_faults (
  kind text NOT NULL,          -- process | backend | server | locker | listener
  os_pid int,
  backend_pid int,
  at timestamptz NOT NULL DEFAULT clock_timestamp()
)
"""


def setup_tables(conn: Connection) -> None:
    conn.execute(TABLES)


def expect(conn: Connection, ids: Sequence[int], kind: str = "") -> None:
    """Remember *ids* as enqueued jobs every one of which must end worked."""
    conn.execute(
        "INSERT INTO rel_expected (job_id, kind) SELECT unnest(%s::bigint[]), %s",
        (list(ids), kind),
    )


def fault(conn: Connection, kind: str, os_pid: int | None = None,
          backend_pid: int | None = None) -> None:
    conn.execute(
        "INSERT INTO rel_faults (kind, os_pid, backend_pid) VALUES (%s, %s, %s)",
        (kind, os_pid, backend_pid),
    )


# -- invariants -----------------------------------------------------------------

OVERLAPS = """
WITH r AS (
  SELECT r.run, r.job_id, r.started_at,
         least(
           coalesce(e.ended_at, 'infinity'),
           coalesce((SELECT min(greatest(f.at, r.started_at)) FROM rel_faults AS f
                     WHERE (f.kind = 'process' AND f.os_pid = r.os_pid)
                        -- A run whose session is terminated is over: it can
                        -- commit nothing more, and its locks are gone. That
                        -- includes a run that started on a session just being
                        -- terminated (the fault is noted just before the kill).
                        OR (f.kind = 'backend' AND f.backend_pid = r.backend_pid
                            AND f.at >= r.started_at - interval '1 second')
                        OR (f.kind = 'server' AND f.at >= r.started_at)), 'infinity')
         ) AS ended_at
  FROM rel_runs AS r
  LEFT JOIN (SELECT run, min(ended_at) AS ended_at FROM rel_ends GROUP BY run) AS e USING (run)
)
SELECT a.job_id, a.run, b.run
FROM r AS a JOIN r AS b
  ON a.job_id = b.job_id AND a.run < b.run
 AND a.started_at < b.ended_at AND b.started_at < a.ended_at
"""

SUMMARY = """
WITH x AS (
  SELECT e.job_id,
         (SELECT count(*) FROM rel_effects AS f WHERE f.job_id = e.job_id) AS effects,
         j.id IS NOT NULL AS present,
         j.error_count,
         j.expired_at IS NOT NULL AS expired,
         j.finished_at IS NOT NULL AS finished
  FROM rel_expected AS e LEFT JOIN que_jobs AS j ON j.id = e.job_id
)
SELECT count(*),
       count(*) FILTER (WHERE effects >= 1),
       count(*) FILTER (WHERE effects > 1),
       count(*) FILTER (WHERE effects = 0 AND NOT present),
       count(*) FILTER (WHERE effects >= 1 AND present AND NOT finished),
       count(*) FILTER (WHERE effects = 0 AND present AND NOT expired AND NOT finished),
       count(*) FILTER (WHERE effects = 0 AND present AND expired),
       (SELECT count(*) FROM rel_runs),
       (SELECT count(DISTINCT r.job_id) FROM rel_runs AS r
        JOIN rel_ends AS e ON e.job_id = r.job_id AND e.outcome = 'done' AND e.run <> r.run
        JOIN rel_effects AS f ON f.run = e.run
        WHERE r.started_at > e.ended_at),
       (SELECT count(*) FROM rel_faults WHERE kind <> 'note')
FROM x
"""


def invariants(conn: Connection) -> dict[str, int]:
    """The job-level invariants over everything the case enqueued."""
    (jobs, worked, double_effect, lost, half_done, waiting, expired, runs, late, faults), = (
        conn.execute(SUMMARY)
    )
    overlaps = conn.execute(OVERLAPS)
    return {
        "jobs": int(jobs),
        "worked": int(worked),
        "waiting": int(waiting),
        "expired": int(expired),
        "job_runs": int(runs),
        "faults": int(faults),
        # runs that started after the run that committed the job's effect
        # (not a double run, but a wasted one; the late run must roll back):
        "late_reruns": int(late),
        # must all be 0:
        "lost": int(lost),
        "double_effect": int(double_effect),
        "effect_without_destroy": int(half_done),
        "double_run": len({row[0] for row in overlaps}),
    }


def backend_pid(conn: Connection) -> int:
    """The server pid of a session, read from the driver (no query: the
    session may belong to another thread)."""
    raw = conn.raw
    info = getattr(raw, "info", None)
    if info is not None and getattr(info, "backend_pid", None):  # psycopg, psycopg2
        return int(info.backend_pid)
    key = getattr(raw, "_backend_key_data", None)  # pg8000
    if key:
        return int.from_bytes(key[:4], "big", signed=True)
    return int(raw.get_backend_pid())


def advisory_locks(conn: Connection) -> int:
    """Advisory locks other sessions hold in this database."""
    return int(scalar(
        conn,
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid <> pg_backend_pid() "
        "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    ))


def leaked_locks(conn: Connection, timeout: float = 10.0) -> int:
    """Advisory locks left once the workers stopped (a killed process's
    backend may take a moment to notice its client is gone)."""
    deadline = time.monotonic() + timeout
    while True:
        n = advisory_locks(conn)
        if n == 0 or time.monotonic() > deadline:
            return n
        time.sleep(0.1)


def dead_lockers(conn: Connection) -> int:
    """que_lockers rows whose session is gone."""
    return int(scalar(
        conn, "SELECT count(*) FROM que_lockers WHERE pid NOT IN (SELECT pid FROM pg_stat_activity)"
    ))


MUST_BE_ZERO = ("lost", "double_effect", "effect_without_destroy", "double_run",
                "leaked_locks", "stale_lockers")


def job_details(conn: Connection, job_ids: Sequence[int]) -> str:
    """Every run, end, effect and fault around the given jobs (for failure messages)."""
    out = []
    for job_id in job_ids:
        runs = conn.execute(
            "SELECT r.run, r.os_pid, r.thread, r.backend_pid, r.started_at::text, "
            "e.ended_at::text, e.outcome, (SELECT count(*) FROM rel_effects f WHERE f.run = r.run) "
            "FROM rel_runs r LEFT JOIN rel_ends e USING (run) WHERE r.job_id = %s "
            "ORDER BY r.started_at", (job_id,))
        row = conn.execute("SELECT error_count, last_error_message FROM que_jobs WHERE id = %s",
                           (job_id,))
        out.append(f"job {job_id} (row: {row}):\n  " + "\n  ".join(map(str, runs)))
    faults = conn.execute("SELECT kind, os_pid, backend_pid, at::text FROM rel_faults ORDER BY at")
    out.append("faults: " + "; ".join(map(str, faults)))
    return "\n".join(out)


def problem_jobs(conn: Connection, limit: int = 5) -> list[int]:
    ids = {row[0] for row in conn.execute(OVERLAPS)}
    ids.update(row[0] for row in conn.execute(
        "SELECT job_id FROM rel_effects GROUP BY job_id HAVING count(*) > 1"))
    ids.update(row[0] for row in conn.execute(
        "SELECT e.job_id FROM rel_expected e "
        "WHERE NOT EXISTS (SELECT 1 FROM rel_effects f WHERE f.job_id = e.job_id) "
        "AND NOT EXISTS (SELECT 1 FROM que_jobs j WHERE j.id = e.job_id)"))
    return sorted(ids)[:limit]


# -- results ----------------------------------------------------------------------


def record(case: str, adapter: str, figures: dict[str, Any], *, injected: int,
           **extra: Any) -> dict[str, Any]:
    """Append one case's figures to $QUE_RELIABILITY_RESULTS (if set) and
    return the record. *injected*: the faults injected, or the inputs tried."""
    test = os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" ", 1)[0]
    rec = {"case": case, "adapter": adapter, "scale": SCALE, "test": test,
           "injected": injected, **figures, **extra}
    path = os.environ.get(RESULTS_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(rec, default=str) + "\n")
    print(f"\n[reliability] {json.dumps(rec, default=str)}")
    return rec


def assert_clean(rec: dict[str, Any], conn: Connection | None = None) -> None:
    bad = {k: rec[k] for k in MUST_BE_ZERO if rec.get(k)}
    if bad and conn is not None:
        bad["details"] = job_details(conn, problem_jobs(conn))
    assert not bad, f"invariants broken: {bad}"


# -- worker subprocesses ------------------------------------------------------------


class WorkerProcs:
    """``que work`` subprocesses working tests.reliability.rjobs; every one is
    stopped (SIGKILL if need be) by :meth:`close`."""

    def __init__(self, dsn: str, adapter: Adapter, checker: Connection) -> None:
        self.dsn = dsn
        self.adapter = adapter
        self.checker = checker
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: dict[int, Path] = {}
        self.killed = 0

    def spawn(self, *extra: str) -> subprocess.Popen[bytes]:
        log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed in close()
            prefix="que_rel_worker_", suffix=".log", delete=False
        )
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        env.pop("QUE_DSN", None)
        env["DATABASE_URL"] = env["QUE_REL_DSN"] = self.dsn
        env["QUE_REL_ADAPTER"] = self.adapter.name
        cmd = [sys.executable, "-m", "que_core.cli", "work", "--adapter", self.adapter.name,
               "-i", "0.2", "--log-level", "warning", *extra, "tests.reliability.rjobs"]
        p = subprocess.Popen(cmd, cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                             stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.procs.append(p)
        self.logs[p.pid] = Path(log.name)
        return p

    def alive(self) -> list[subprocess.Popen[bytes]]:
        return [p for p in self.procs if p.poll() is None]

    def registered(self, p: subprocess.Popen[bytes]) -> bool:
        return bool(scalar(self.checker,
                           "SELECT count(*) FROM que_lockers WHERE ruby_pid = %s", p.pid))

    def kill9(self, p: subprocess.Popen[bytes]) -> None:
        """SIGSTOP (nothing more runs in it), note the time, SIGKILL."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(p.pid, signal.SIGSTOP)
        fault(self.checker, "process", os_pid=p.pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(p.pid, signal.SIGKILL)
        p.wait(30)
        self.killed += 1

    def terminate_all(self, timeout: float = 60) -> list[int | None]:
        """SIGTERM every live worker; the exit codes (None: had to be killed)."""
        live = self.alive()
        for p in live:
            p.send_signal(signal.SIGTERM)
        codes: list[int | None] = []
        for p in live:
            try:
                codes.append(p.wait(timeout))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)
                codes.append(None)
        return codes

    def log_tail(self, n: int = 40) -> str:
        out = []
        for pid, path in self.logs.items():
            with contextlib.suppress(OSError):
                lines = path.read_text(errors="replace").splitlines()
                if lines:
                    out.append(f"--- worker {pid} ---\n" + "\n".join(lines[-n:]))
        return "\n".join(out)

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p.pid, signal.SIGCONT)
                p.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(10)
        for path in self.logs.values():
            with contextlib.suppress(OSError):
                path.unlink()


def random_pause(rng: random.Random, low: float, high: float) -> None:
    time.sleep(rng.uniform(low, high))


#: The ``elapsed`` fixture: the seconds since a case began, to 0.1 s.
Elapsed = Callable[[], float]


def timer() -> Elapsed:
    """Seconds since this call, to 0.1 s (a case's record's ``seconds``)."""
    started = time.monotonic()
    return lambda: round(time.monotonic() - started, 1)
