"""Jobs that misbehave: one that hangs past the shutdown deadline, ones
whose error handling raises, ones that close or break their own session;
and two runs resolving the same job."""

from __future__ import annotations

import contextlib
import math
import threading
import time
from typing import Any

import pytest

from conformance.fixtures import scalar, wait_until
from que_core import Job
from que_core.connection import Adapter, Connection
from que_core.job import JobAlreadyResolved
from tests.reliability import harness
from tests.reliability.rjobs import (
    Effect,
    Hang,
    effect_and_destroy,
    end_raised,
    end_run,
    start_run,
)

# -- a job that hangs past the shutdown deadline --------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_job_hanging_past_the_shutdown_deadline(
    adapter: Adapter, rel: Connection, workers: Any, elapsed: harness.Elapsed
) -> None:
    hang_for = 3.0
    hung = Hang.enqueue(hang_for, conn=rel.raw, priority=1)
    others = Effect.enqueue_many([[] for _ in range(20)], conn=rel.raw)
    harness.expect(rel, [hung.id] + [j.id for j in others])  # type: ignore[list-item]
    w1 = workers(worker_count=2)
    backend = wait_until(lambda: scalar(
        rel, "SELECT backend_pid FROM rel_runs WHERE job_id = %s", hung.id),
        within=20, interval=0.02, what="the hanging job's start")
    t0 = time.monotonic()
    assert w1.stop(timeout=0.5) is False
    stop_took = time.monotonic() - t0
    assert stop_took < 5
    # Nothing of the stopped worker is left: its locks, its row, the hung
    # job's session (so that nothing the hung thread does can commit).
    leaked = harness.leaked_locks(rel, timeout=2)
    session_left = scalar(
        rel, "SELECT count(*) FROM pg_stat_activity WHERE pid = %s", backend)
    harness.fault(rel, "backend", backend_pid=backend)  # the hung run ends here at the latest
    lockers = scalar(rel, "SELECT count(*) FROM que_lockers")
    # Another worker runs the job again at once, while the first thread still hangs.
    w2 = workers(worker_count=2)
    wait_until(lambda: scalar(rel, "SELECT count(*) FROM que_jobs") == 0,
                     within=30, what="the jobs worked by the next worker")
    # Let the hung thread wake up and try to commit its effect.
    time.sleep(max(0.0, hang_for - (time.monotonic() - t0)) + 1.0)
    assert w2.stop(timeout=10) is True
    figures = harness.invariants(rel)
    figures["leaked_locks"] = leaked + harness.leaked_locks(rel)
    figures["stale_lockers"] = int(lockers) + int(scalar(
        rel, "SELECT count(*) FROM que_lockers"))
    rec = harness.record(
        "job hanging past the shutdown deadline", adapter.name, figures, injected=1,
        stop_seconds=round(stop_took, 2), hung_session_left=int(session_left),
        seconds=elapsed(),
    )
    harness.assert_clean(rec, rel)
    assert session_left == 0, "the hung job's session outlived the worker's stop"
    assert figures["worked"] == figures["jobs"]


# -- jobs whose error handling raises --------------------------------------------------


class StrRaises(Exception):
    def __str__(self) -> str:
        raise RuntimeError("__str__ of the job's exception raised")


class ReprAndStrRaise(Exception):
    def __str__(self) -> str:
        raise ValueError("no str")

    def __repr__(self) -> str:
        raise ValueError("no repr")


class BadErrors(Job):
    """Fails, and its error handling fails too, in the way *how* says."""

    job_name = "rel.BadErrors"
    retry_interval = 0.2
    maximum_retry_count = 1

    def retry_delay(self, error_count: int) -> float:
        how = self.args[0]
        if how == "retry_delay_raises":
            raise RuntimeError("retry_delay raised")
        if how == "retry_delay_nan":
            return math.nan
        if how == "retry_delay_inf":
            return math.inf
        if how == "retry_delay_huge":
            return 1e300
        if how == "retry_delay_negative":
            return -5.0
        if how == "retry_delay_not_a_number":
            return "soon"  # type: ignore[return-value]
        return 0.2

    def run(self, how: str) -> None:
        run = start_run(self)
        end_run(self, run, "error")
        if how == "str_raises":
            raise StrRaises()
        if how == "repr_and_str_raise":
            raise ReprAndStrRaise()
        if how == "base_exception":
            raise KeyboardInterrupt("a job raised KeyboardInterrupt")
        if how == "raises_in_rollback":
            assert self.db is not None
            with self.transaction():
                self.db.execute("INSERT INTO rel_effects (job_id, run) VALUES (%s, %s)",
                                (self.id, run))
                # the session dies inside the block: the rollback fails too
                self.db.execute("SELECT pg_terminate_backend(pg_backend_pid())")
        raise RuntimeError(f"failing: {how}")


ERROR_HANDLING = [
    "str_raises", "repr_and_str_raise", "base_exception", "raises_in_rollback",
    "retry_delay_raises", "retry_delay_nan", "retry_delay_inf", "retry_delay_huge",
    "retry_delay_negative", "retry_delay_not_a_number",
]


FAR_FUTURE = ("retry_delay_inf", "retry_delay_huge")


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_jobs_whose_error_handling_raises(
    adapter: Adapter, rel: Connection, workers: Any, elapsed: harness.Elapsed
) -> None:
    """Each error is recorded and retried until the job expires (2 runs,
    maximum_retry_count = 1), or retried in a century when retry_delay says
    forever: never lost, never run in a hot loop, the worker keeps working."""
    jobs = {how: BadErrors.enqueue(how, conn=rel.raw) for how in ERROR_HANDLING}
    w = workers(worker_count=3)
    after = Effect.enqueue_many([[] for _ in range(20)], conn=rel.raw)
    harness.expect(rel, [j.id for j in after])  # type: ignore[misc]

    far = [jobs[h].id for h in FAR_FUTURE]

    def settled() -> bool:
        n = scalar(rel, "SELECT count(*) FROM que_jobs WHERE expired_at IS NULL "
                           "AND NOT (id = ANY(%s::bigint[]) AND error_count = 1)", far)
        return n == 0

    try:
        wait_until(settled, within=30, what="every failing job expired")
        timed_out = None
    except AssertionError as exc:
        timed_out = exc
    rows = {r[0]: r[1:] for r in rel.execute(
        "SELECT id, error_count, expired_at IS NOT NULL, last_error_message, "
        "extract(epoch FROM run_at - now()) FROM que_jobs")}
    runs = dict(rel.execute("SELECT job_id, count(*) FROM rel_runs GROUP BY job_id"))
    detail = {how: (rows.get(j.id), runs.get(j.id)) for how, j in jobs.items()}
    assert timed_out is None, "\n".join(f"{k}: {v}" for k, v in detail.items())
    assert w.running
    assert w.stop(timeout=10) is True
    bad = {}
    for how, job in jobs.items():
        row = rows.get(job.id)
        if how in FAR_FUTURE:  # retried, in a century: the longest delay written
            if row is None or row[0] != 1 or row[1] or row[3] < 365 * 86400 or runs.get(
                    job.id) != 1:
                bad[how] = detail[how]
        elif row is None or row[0] != 2 or not row[1] or not row[2] or runs.get(job.id) != 2:
            bad[how] = detail[how]
    figures = harness.invariants(rel)
    figures["leaked_locks"] = harness.leaked_locks(rel)
    figures["stale_lockers"] = int(scalar(rel, "SELECT count(*) FROM que_lockers"))
    figures["jobs"] += len(jobs)
    figures["lost"] += sum(1 for j in jobs.values() if j.id not in rows)
    rec = harness.record(
        "job whose error handling raises", adapter.name, figures, injected=len(ERROR_HANDLING),
        variants=len(ERROR_HANDLING), mishandled=len(bad),
        seconds=elapsed(),
    )
    harness.assert_clean(rec, rel)
    assert not bad, f"errors not recorded, retried and expired as they should: {bad}"
    effects = scalar(rel, "SELECT count(*) FROM rel_effects WHERE job_id = %s",
                             jobs["raises_in_rollback"].id)
    assert effects == 0


# -- jobs that close or break their own session ----------------------------------------


def _statements(*sql: str) -> Any:
    """A breaker that runs *sql*, statement after statement, on the job's session."""

    def breaks(job: Job) -> None:
        assert job.db is not None
        for statement in sql:
            job.db.execute(statement)

    return breaks


def _breakers(adapter: Adapter) -> dict[str, Any]:
    def close(job: Job) -> None:
        assert job.db is not None
        job.db.close()
        job.conn.close()

    def open_write_transaction(job: Job) -> None:
        assert job.db is not None
        job.db.execute("BEGIN")
        job.db.execute("INSERT INTO rel_effects (job_id, run) VALUES (%s, 'uncommitted')",
                       (job.id,))

    def aborted_transaction(job: Job) -> None:
        assert job.db is not None
        job.db.execute("BEGIN")
        with contextlib.suppress(Exception):
            job.db.execute("SELECT 1 / 0")

    def autocommit_off(job: Job) -> None:
        if hasattr(job.conn, "autocommit"):
            job.conn.autocommit = False

    return {
        "close": close,
        "terminate": _statements("SELECT pg_terminate_backend(pg_backend_pid())"),
        "open_transaction": _statements("BEGIN", "SELECT 1"),
        "open_write_transaction": open_write_transaction,
        "aborted_transaction": aborted_transaction,
        "search_path": _statements("SET search_path TO nowhere"),
        "read_only": _statements("SET default_transaction_read_only = on"),
        "statement_timeout": _statements("SET statement_timeout = 1", "SET lock_timeout = 1"),
        "unlock_all": _statements("SELECT pg_advisory_unlock_all()"),
        "autocommit_off": autocommit_off,
    }


BREAK = {}


class Breaks(Job):
    """Does its effect and destroy in one transaction, or not (*effect*), then
    breaks its session in the way *how* says, and returns."""

    job_name = "rel.Breaks"
    retry_interval = 0.2
    maximum_retry_count = 3

    def run(self, how: str, effect: bool) -> None:
        run = start_run(self)
        try:
            if effect:
                effect_and_destroy(self, run)
            else:
                end_run(self, run, "done")
            BREAK[how](self)
        except BaseException:
            end_raised(self, run)
            raise


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_jobs_that_close_or_break_their_own_session(
    adapter: Adapter, rel: Connection, workers: Any, elapsed: harness.Elapsed
) -> None:
    """Each breaking job ends resolved (destroyed, or an error recorded and
    retried), nothing it left uncommitted commits later, and the same
    worker thread (one thread only) goes on working the jobs after it."""
    BREAK.update(_breakers(adapter))
    ids = {}
    for how in BREAK:
        for effect in (True, False):
            job = Breaks.enqueue(how, effect, conn=rel.raw)
            after = Effect.enqueue(conn=rel.raw)
            ids[(how, effect)] = (job.id, after.id)
    harness.expect(rel, [a for _, a in ids.values()])
    w = workers(worker_priorities=[None])  # one thread: each next job runs on the same session

    def settled() -> bool:
        return scalar(
            rel, "SELECT count(*) FROM que_jobs WHERE expired_at IS NULL "
            "AND (job_class <> 'rel.Breaks' OR error_count = 0)") == 0

    try:
        wait_until(settled, within=60, what="every job worked")
    finally:
        left = {r[0]: r[1:] for r in rel.execute(
            "SELECT id, job_class, error_count, last_error_message FROM que_jobs")}
    assert w.running
    assert w.stop(timeout=10) is True
    bad = {}
    for (how, effect), (job_id, after_id) in ids.items():
        if after_id in left:
            bad[(how, effect)] = ("the next job was not worked", left[after_id])
        effects = scalar(
            rel, "SELECT count(*) FROM rel_effects WHERE job_id = %s", job_id)
        if effects > 1 or (effect and job_id not in left and effects != 1):
            bad[(how, effect)] = (f"{effects} effects", left.get(job_id))
        uncommitted = scalar(
            rel, "SELECT count(*) FROM rel_effects WHERE run = 'uncommitted'")
        if uncommitted:
            bad[("uncommitted", False)] = f"{uncommitted} uncommitted effects committed"
    figures = harness.invariants(rel)
    figures["leaked_locks"] = harness.leaked_locks(rel)
    figures["stale_lockers"] = int(scalar(rel, "SELECT count(*) FROM que_lockers"))
    figures["jobs"] += len(ids)
    rec = harness.record(
        "job that closes or breaks its own session", adapter.name, figures, injected=len(ids),
        variants=len(ids), mishandled=len(bad), seconds=elapsed(),
    )
    harness.assert_clean(rec, rel)
    assert not bad, bad


# -- two runs resolving one job ------------------------------------------------------


@pytest.mark.timeout(60)
def test_a_second_run_finding_the_job_resolved_rolls_back(
    adapter: Adapter, dsn: str, rel: Connection
) -> None:
    """The race behind a kill -9 mid-commit, reproduced directly: run B's
    destroy() waits for run A's commit, finds the job gone, raises, and B's
    effect rolls back with it."""
    job = Effect.enqueue(conn=rel.raw)
    a_conn, b_conn = adapter.connect(dsn), adapter.connect(dsn)
    try:
        a = Effect([], id=job.id, conn=a_conn)
        b = Effect([], id=job.id, conn=b_conn)
        outcome: dict[str, Any] = {}
        with a.transaction():
            a_conn.execute("INSERT INTO rel_effects (job_id, run) VALUES (%s, 'a')", (job.id,))
            a.destroy()

            def run_b() -> None:
                try:
                    with b.transaction():
                        b_conn.execute(
                            "INSERT INTO rel_effects (job_id, run) VALUES (%s, 'b')", (job.id,))
                        b.destroy()  # blocks on A's row lock until A commits
                except JobAlreadyResolved as exc:
                    outcome["b"] = exc

            t = threading.Thread(target=run_b)
            t.start()
            time.sleep(0.3)
        t.join(10)
        assert isinstance(outcome.get("b"), JobAlreadyResolved)
        effects = rel.execute("SELECT run FROM rel_effects ORDER BY run")
        harness.record("two runs resolving one job (the kill -9 race, reproduced)",
                       adapter.name, {"jobs": 1, "double_effect": len(effects) - 1},
                       injected=1)
        assert effects == [("a",)]
        # finish/expire/retry_in of a job no longer waiting refuse too
        for method, args in (("finish", ()), ("expire", ()), ("retry_in", (5,))):
            c = Effect([], id=job.id, conn=b_conn)
            with pytest.raises(JobAlreadyResolved):
                getattr(c, method)(*args)
    finally:
        a_conn.close()
        b_conn.close()
