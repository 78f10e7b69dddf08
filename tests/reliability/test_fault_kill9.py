"""kill -9 of ``que work`` processes at random moments while several of
them work thousands of jobs, some slow, some failing once."""

from __future__ import annotations

import random

import pytest

from conformance.fixtures import scalar, wait_until
from que_core.connection import Adapter, Connection
from tests.reliability import harness
from tests.reliability.harness import scaled
from tests.reliability.rjobs import AEffect, Effect

# the core meets each driver here
pytestmark = pytest.mark.per_adapter

PROCESSES = scaled(3, 4)
JOBS = scaled(800, 6000)
KILLS = scaled(5, 40)


def enqueue_mix(conn: Connection, n: int, rng: random.Random) -> list[int]:
    """*n* jobs: most quick, ~8% slow (0.2-1 s), ~3% failing on their first
    run; a third of each kind ``async def`` (rel.AEffect, on the event loop)."""
    quick, slow, failing = [], [], []
    for _ in range(n):
        x = rng.random()
        if x < 0.08:
            slow.append([round(rng.uniform(0.2, 1.0), 2)])
        elif x < 0.11:
            failing.append([0.0, True])
        else:
            quick.append([])
    ids: list[int] = []
    for batch in (quick, slow, failing):
        for i in range(0, len(batch), 2000):
            chunk = batch[i : i + 2000]
            cut = len(chunk) // 3
            ids += [j.id for j in AEffect.enqueue_many(chunk[:cut], conn=conn.raw)]
            ids += [j.id for j in Effect.enqueue_many(chunk[cut:], conn=conn.raw)]
    return [i for i in ids if i is not None]


@pytest.mark.slow
@pytest.mark.timeout(scaled(240, 1800))
def test_kill_9_at_random_moments(
    adapter: Adapter, rel: Connection, procs: harness.WorkerProcs, elapsed: harness.Elapsed
) -> None:
    rng, seed = harness.seeded_rng()
    ids = enqueue_mix(rel, JOBS, rng)
    harness.expect(rel, ids, "bulk")
    for _ in range(PROCESSES):
        procs.spawn()
    stale_after_restart = 0
    trickled = 0
    for _ in range(KILLS):
        harness.random_pause(rng, 0.3, 1.5)
        # a few jobs one by one, so that the NOTIFY path is exercised too
        for _ in range(rng.randrange(1, 6)):
            job = rng.choice([Effect, AEffect]).enqueue(rng.choice([0.0, 0.0, 0.3]),
                                                         conn=rel.raw)
            assert job.id is not None
            harness.expect(rel, [job.id], "single")
            trickled += 1
        victim = rng.choice(procs.alive())
        procs.kill9(victim)
        new = procs.spawn()
        wait_until(lambda new=new: procs.registered(new) or new.poll() is not None,
                         within=60, what="the new worker's registration")
        assert new.poll() is None, procs.log_tail()
        # The dead process's que_lockers row must not outlive the new worker's start.
        stale_after_restart += int(scalar(
            rel, "SELECT count(*) FROM que_lockers WHERE ruby_pid = %s", victim.pid))
    # Let the survivors drain everything.
    wait_until(
        lambda: scalar(
            rel, "SELECT count(*) FROM que_jobs j JOIN rel_expected e ON e.job_id = j.id") == 0,
        within=scaled(120, 900), interval=0.3, what="all jobs worked",
    )
    codes = procs.terminate_all()
    assert all(c == 0 for c in codes), (codes, procs.log_tail())
    figures = harness.invariants(rel)
    figures["leaked_locks"] = harness.leaked_locks(rel)
    figures["stale_lockers"] = stale_after_restart + int(
        scalar(rel, "SELECT count(*) FROM que_lockers"))
    rec = harness.record(
        "kill -9 of worker processes", adapter.name, figures, injected=procs.killed,
        processes=PROCESSES, kills=procs.killed, trickled=trickled, seed=seed,
        seconds=elapsed(),
    )
    harness.assert_clean(rec, rel)
    assert figures["worked"] == figures["jobs"], procs.log_tail()
