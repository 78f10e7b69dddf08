"""A million waiting jobs (bulk-inserted) and a table full of dead tuples:
workers still make progress and the lock query stays fast.

The default run uses 100,000 waiting jobs and one adapter (the lock query is
the same SQL for every adapter); ``QUE_RELIABILITY=full`` uses 1,000,000 and
all three.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import pytest

from conformance.fixtures import scalar, wait_until
from que_core.claims import Claims
from que_core.connection import Adapter, Connection
from que_core.sql import q
from tests.reliability import harness
from tests.reliability.harness import FULL, scaled

WAITING = scaled(100_000, 1_000_000)
DEAD = scaled(100_000, 500_000)
WORK_SECONDS = scaled(8, 30)


def bulk_insert(conn: Connection, n: int, priority: int) -> None:
    """*n* rel.Effect jobs in one statement, without the per-row NOTIFY."""
    with conn.transaction():
        conn.execute(q("set_skip_notify"), ("true",))
        conn.execute(
            "INSERT INTO que_jobs (job_class, args, priority, job_schema_version) "
            "SELECT 'rel.Effect', '[]', %s, 2 FROM generate_series(1, %s)", (priority, n))


def lock_query_ms(conn: Connection, samples: int = 15, working: bool = False) -> dict[str, float]:
    """Median and worst time of a worker's claim (8 jobs), locks released after.
    While workers work, a job they finish between the claim's walk and its
    fresh re-read is rightly left out: then a claim may return fewer."""
    times = []
    for _ in range(samples):
        claims = Claims(conn, ["default"])
        t = time.perf_counter()
        got = claims.next(None, 8)
        times.append((time.perf_counter() - t) * 1000)
        claims.flush()
        assert 1 <= len(got) <= 8 if working else len(got) == 8
    return {"median_ms": round(statistics.median(times), 2), "max_ms": round(max(times), 2)}


def poll_index_scans(conn: Connection, claim: Any) -> bool:
    """Whether *claim* scanned que_poll_idx (the claim's walk runs inside a
    PL/pgSQL function, which EXPLAIN does not show: count the index's scans)."""
    sql = ("SELECT coalesce(sum(idx_scan), 0) FROM pg_stat_user_indexes "
           "WHERE indexrelname = 'que_poll_idx'")
    conn.execute("SELECT pg_stat_force_next_flush()")
    before = int(scalar(conn, sql))
    claim()
    conn.execute("SELECT pg_stat_force_next_flush()")
    return int(scalar(conn, sql)) > before


def dead_tuples(conn: Connection) -> int:
    conn.execute("SELECT pg_stat_force_next_flush()")
    return int(scalar(
        conn, "SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = 'que_jobs'") or 0)


@pytest.mark.slow
@pytest.mark.timeout(scaled(240, 3600))
# adapter-neutral SQL: the default run measures it on the first adapter only
@(pytest.mark.per_adapter if FULL else pytest.mark.slow)
def test_a_million_waiting_jobs_and_dead_tuples(
    adapter: Adapter, dsn: str, rel: Connection, procs: harness.WorkerProcs,
    elapsed: harness.Elapsed,
) -> None:
    figures: dict[str, Any] = {"waiting": WAITING}
    rel.execute("ALTER TABLE que_jobs SET (autovacuum_enabled = off)")  # keep the dead tuples
    t = time.monotonic()
    bulk_insert(rel, WAITING, 100)
    figures["insert_seconds"] = round(time.monotonic() - t, 1)
    rel.execute("ANALYZE que_jobs")
    figures["lock_ms_waiting"] = lock_query_ms(rel)
    # Dead tuples ahead of every waiting job in que_poll_idx order: deleted
    # jobs of priority 1, as a busy queue leaves them between vacuums.
    bulk_insert(rel, DEAD, 1)
    holder = procs.adapter.connect(dsn)
    try:
        # A long transaction elsewhere (the known trap): its snapshot keeps the
        # dead tuples visible to someone, so no scan can mark them dead.
        holder.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        holder.execute("SELECT count(*) FROM rel_faults")
        rel.execute("DELETE FROM que_jobs WHERE priority = 1")
        figures["dead_tuples"] = dead_tuples(rel)
        figures["lock_ms_dead_old_snapshot"] = lock_query_ms(rel, samples=5)
    finally:
        holder.close()
    # In a live system transactions come and go all the time; one here lets
    # PostgreSQL recompute its removal horizon (it only does so when the
    # oldest running xid moved), so that scans may mark the dead entries.
    wait_until(lambda: scalar(
        rel, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND backend_xmin IS NOT NULL AND pid <> pg_backend_pid()") == 0, within=10)
    rel.execute("SELECT txid_current()")
    figures["lock_ms_dead"] = lock_query_ms(rel)  # the first scans mark the dead entries
    figures["uses_poll_index"] = poll_index_scans(rel, lambda: lock_query_ms(rel, samples=1))
    # Workers make progress through all of it.
    before = int(scalar(rel, "SELECT count(*) FROM que_jobs"))
    for _ in range(2):
        procs.spawn()
    wait_until(lambda: scalar(rel, "SELECT count(*) FROM que_lockers") == 2,
                     within=60, what="workers registered")
    t = time.monotonic()
    time.sleep(WORK_SECONDS)
    figures["lock_ms_while_working"] = lock_query_ms(rel, samples=5, working=True)
    codes = procs.terminate_all()
    took = time.monotonic() - t
    after = int(scalar(rel, "SELECT count(*) FROM que_jobs"))
    worked = before - after
    effects = int(scalar(rel, "SELECT count(*) FROM rel_effects"))
    double = int(scalar(rel, "SELECT count(*) FROM (SELECT job_id FROM rel_effects "
                                     "GROUP BY job_id HAVING count(*) > 1) AS d"))
    figures.update({
        "jobs": WAITING, "worked": worked, "jobs_per_second": round(worked / took),
        "lost": worked - effects if worked > effects else 0, "double_effect": double,
        "double_run": len(rel.execute(harness.OVERLAPS)),
        "leaked_locks": harness.leaked_locks(rel), "stale_lockers": int(scalar(
            rel, "SELECT count(*) FROM que_lockers")),
    })
    rec = harness.record("1,000,000 waiting jobs and dead tuples" if FULL else
                         "100,000 waiting jobs and dead tuples", adapter.name, figures,
                         injected=1, seconds=elapsed())
    harness.assert_clean(rec)
    assert all(c == 0 for c in codes), (codes, procs.log_tail())
    assert effects == worked and worked > 0
    assert figures["uses_poll_index"], "the claim did not scan que_poll_idx"
    # "Fast": a poll of a million-job queue costs about what it costs on an
    # empty one. Generous bounds, for a noisy machine.
    assert figures["lock_ms_waiting"]["median_ms"] < 50
    assert figures["lock_ms_dead"]["median_ms"] < 50
    assert figures["lock_ms_while_working"]["median_ms"] < 100
