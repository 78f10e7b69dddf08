"""pg_terminate_backend of the sessions of running workers: the listener's
(which registers the worker) while its jobs run, the job sessions mid-job,
any session, and the listener's for good."""

from __future__ import annotations

import time
from typing import Any

import pytest

from conformance.fixtures import scalar, wait_until
from que_core.connection import Adapter, Connection
from que_core.errors import ConnectionLost
from tests.reliability import harness
from tests.reliability.harness import scaled
from tests.reliability.rjobs import AEffect, Effect

# the core meets each driver here
pytestmark = pytest.mark.per_adapter

JOBS = scaled(200, 3000)
ROUNDS = scaled(10, 80)


def _terminate(conn: Connection, pid: int) -> bool:
    return bool(scalar(conn, "SELECT pg_terminate_backend(%s)", pid))


def _running_backends(conn: Connection) -> list[int]:
    """Backends of runs in progress (started, not ended)."""
    rows = conn.execute(
        "SELECT r.backend_pid FROM rel_runs r WHERE NOT EXISTS "
        "(SELECT 1 FROM rel_ends e WHERE e.run = r.run) "
        "AND r.backend_pid IN (SELECT pid FROM pg_stat_activity)"
    )
    return [r[0] for r in rows]


@pytest.mark.slow
@pytest.mark.timeout(scaled(180, 1800))
def test_terminate_listener_and_job_sessions_mid_job(
    adapter: Adapter, rel: Connection, workers: Any, elapsed: harness.Elapsed
) -> None:
    rng, seed = harness.seeded_rng()
    args = [[round(rng.uniform(0.05, 0.6), 2)] if rng.random() < 0.5 else [] for _ in range(JOBS)]
    # A third async def (rel.AEffect): their job sessions are the event loop's.
    ids = [j.id for j in Effect.enqueue_many(args[JOBS // 3:], conn=rel.raw)]
    ids += [j.id for j in AEffect.enqueue_many(args[:JOBS // 3], conn=rel.raw)]
    harness.expect(rel, [i for i in ids if i is not None])
    ws = [workers(worker_count=4) for _ in range(3)]
    done = {"listener": 0, "job": 0, "any": 0}
    for _ in range(ROUNDS):
        harness.random_pause(rng, 0.1, 0.4)
        what = rng.choice(["listener", "listener", "job", "job", "any"])
        if what == "listener":
            busy = [w for w in ws if w.busy_count() and w.listener and w.listener.pid]
            if not busy:
                continue
            pid = rng.choice(busy).listener.pid  # type: ignore[union-attr]
            harness.fault(rel, "listener", backend_pid=pid)
            done["listener"] += _terminate(rel, pid)
        elif what == "job":
            pids = _running_backends(rel)
            if not pids:
                continue
            pid = rng.choice(pids)
            harness.fault(rel, "backend", backend_pid=pid)
            done["job"] += _terminate(rel, pid)
        else:  # any session of the workers: listener, idle job sessions, ...
            pids = [r[0] for r in rel.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid() AND backend_type = 'client backend'")]
            if not pids:
                continue
            pid = rng.choice(pids)
            harness.fault(rel, "backend", backend_pid=pid)
            done["any"] += _terminate(rel, pid)
    wait_until(
        lambda: scalar(rel, "SELECT count(*) FROM que_jobs") == 0,
        within=scaled(90, 600), interval=0.3, what="all jobs worked",
    )
    assert all(w.running for w in ws)
    for w in ws:
        assert w.stop(timeout=30) is True
    figures = harness.invariants(rel)
    figures["leaked_locks"] = harness.leaked_locks(rel)
    figures["stale_lockers"] = int(scalar(rel, "SELECT count(*) FROM que_lockers"))
    rec = harness.record(
        "pg_terminate_backend of listener and job sessions", adapter.name, figures,
        injected=sum(done.values()),
        terminated=done, seed=seed, seconds=elapsed(),
    )
    harness.assert_clean(rec, rel)
    assert figures["worked"] == figures["jobs"]


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize("how", ["terminated", "crashed"])
def test_listener_lost_polling_still_finds_jobs(
    adapter: Adapter, rel: Connection, workers: Any, how: str, elapsed: harness.Elapsed
) -> None:
    """The LISTEN session is terminated and cannot come back, or the
    listener thread dies: no live registration advertises listening any
    more (a dead session's row counts for nothing), and polls find every job."""
    poll = 0.3
    w = workers(poll_interval=poll, worker_count=2)
    wait_until(lambda: scalar(rel, "SELECT bool_and(listening) FROM que_lockers"),
                     within=20, what="listening")
    assert w.listener is not None
    if how == "terminated":
        def refuse() -> Any:
            raise ConnectionLost("refused by the test")

        w.listener._connect = refuse  # every reconnect attempt fails from now on
        assert w.listener.conn is not None
        pid = harness.backend_pid(w.listener.conn)
        harness.fault(rel, "listener", backend_pid=pid)
        assert _terminate(rel, pid)
    else:
        def crash() -> None:
            raise RuntimeError("the listener thread dies")

        w.listener._step = crash
        wait_until(lambda: not w.listener.is_alive(), within=10, what="listener dead")
    wait_until(lambda: scalar(
        rel, "SELECT count(*) FROM que_lockers WHERE listening AND pid IN "
        "(SELECT pid FROM pg_stat_activity)") == 0, within=10, what="no live listening row")
    latencies = []
    n = scaled(6, 100)
    for i in range(n):
        t0 = time.monotonic()
        job = Effect.enqueue(conn=rel.raw)
        assert job.id is not None
        harness.expect(rel, [job.id])
        wait_until(lambda job=job: scalar(
            rel, "SELECT count(*) FROM que_jobs WHERE id = %s", job.id) == 0,
            within=poll * 10 + 5, interval=0.02, what=f"job {i} worked by polling")
        latencies.append(time.monotonic() - t0)
    assert w.running
    assert w.stop(timeout=10) is True
    figures = harness.invariants(rel)
    figures["leaked_locks"] = harness.leaked_locks(rel)
    figures["stale_lockers"] = int(scalar(rel, "SELECT count(*) FROM que_lockers"))
    latencies.sort()
    rec = harness.record(
        f"LISTEN connection lost ({how})", adapter.name, figures, injected=1,
        poll_interval=poll, max_latency=round(latencies[-1], 3),
        median_latency=round(latencies[len(latencies) // 2], 3),
        seconds=elapsed(),
    )
    harness.assert_clean(rec, rel)
    assert figures["worked"] == n
    assert latencies[-1] < poll * 2 + 3
