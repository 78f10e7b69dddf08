"""Job control under faults: jobs that overrun their max_run_time (stopped
in a Python loop and in SQL, retried, effect once), and cancels of running
jobs whose worker is killed with kill -9 before it could stop them."""

from __future__ import annotations

import os
import signal

import pytest

import que_core
from conformance.fixtures import wait_until
from que_core.connection import Adapter, Connection
from tests.reliability import harness
from tests.reliability.harness import scaled
from tests.reliability.rjobs import Effect, Overrun

JOBS = scaled(120, 1000)
OVERRUNS = scaled(12, 80)
CANCELS = scaled(4, 20)


@pytest.mark.slow
@pytest.mark.timeout(scaled(240, 1200))
def test_timeouts_under_load(adapter: Adapter, rel: Connection,
                             procs: harness.WorkerProcs, elapsed: harness.Elapsed) -> None:
    ids = [j.id for j in Effect.enqueue_many([[0.0]] * JOBS, conn=rel.raw)]
    ids += [Overrun.enqueue(3.0, sql=bool(i % 2), conn=rel.raw).id for i in range(OVERRUNS)]
    harness.expect(rel, [i for i in ids if i is not None], "bulk")
    procs.spawn("-w", "4")
    procs.spawn("-w", "4")
    wait_until(
        lambda: harness.scalar(
            rel, "SELECT count(*) FROM que_jobs j JOIN rel_expected e ON e.job_id = j.id") == 0,
        within=scaled(120, 600), interval=0.3, what="all jobs worked")
    codes = procs.terminate_all()
    assert all(c == 0 for c in codes), (codes, procs.log_tail())
    timed_out = int(harness.scalar(rel, "SELECT count(*) FROM rel_ends WHERE outcome = 'raised'"))
    figures = harness.invariants(rel)
    figures["leaked_locks"] = harness.leaked_locks(rel)
    figures["stale_lockers"] = int(harness.scalar(rel, "SELECT count(*) FROM que_lockers"))
    rec = harness.record("jobs past their max_run_time", adapter.name, figures,
                         injected=OVERRUNS, timed_out=timed_out,
                         seconds=elapsed())
    harness.assert_clean(rec, rel)
    assert figures["worked"] == figures["jobs"], procs.log_tail()
    assert timed_out == OVERRUNS  # each overran once, was stopped, then worked


@pytest.mark.slow
@pytest.mark.timeout(scaled(240, 1200))
def test_cancel_then_kill_9(adapter: Adapter, rel: Connection,
                            procs: harness.WorkerProcs, elapsed: harness.Elapsed) -> None:
    rng, seed = harness.seeded_rng()
    slow = [j.id for j in Effect.enqueue_many([[30.0]] * CANCELS, conn=rel.raw)]
    quick = [j.id for j in Effect.enqueue_many([[0.0]] * JOBS, conn=rel.raw)]
    harness.expect(rel, [i for i in slow + quick if i is not None], "bulk")
    procs.spawn("-w", "2")
    cancelled = []
    for job_id in slow:
        assert job_id is not None
        # Wait until some worker runs it, ask to cancel it, and kill that
        # worker before it can act on the request.
        wait_until(lambda j=job_id: harness.scalar(
            rel, "SELECT count(*) FROM rel_runs WHERE job_id = %s", j), within=60,
            what="the slow job to start")
        ((os_pid,),) = rel.execute("SELECT os_pid FROM rel_runs WHERE job_id = %s "
                                   "ORDER BY started_at DESC LIMIT 1", (job_id,))
        victim = next(p for p in procs.alive() if p.pid == os_pid)
        # Stopped first: the request lands on a worker that cannot act on it.
        os.kill(victim.pid, signal.SIGSTOP)
        result = que_core.cancel(job_id, conn=rel.raw, reason="then killed")
        assert result.result == "stopping", result
        cancelled.append(job_id)
        procs.kill9(victim)
        harness.random_pause(rng, 0.0, 0.3)
        new = procs.spawn("-w", "2")
        wait_until(lambda new=new: procs.registered(new) or new.poll() is not None,
                         within=60, what="the new worker's registration")
    wait_until(
        lambda: harness.scalar(
            rel, "SELECT count(*) FROM que_jobs j JOIN rel_expected e ON e.job_id = j.id "
                 "WHERE j.expired_at IS NULL") == 0,
        within=scaled(120, 600), interval=0.3, what="all jobs worked or cancelled")
    codes = procs.terminate_all()
    assert all(c == 0 for c in codes), (codes, procs.log_tail())
    marked = {r[0] for r in rel.execute(
        "SELECT id FROM que_jobs WHERE data -> 'cancelled' ->> 'reason' = 'then killed'")}
    effects = int(harness.scalar(rel, "SELECT count(*) FROM rel_effects WHERE job_id = "
                                      "ANY(%s)", cancelled))
    requests = int(harness.scalar(rel, "SELECT count(*) FROM que_core_cancels"))
    figures = harness.invariants(rel)
    figures["leaked_locks"] = harness.leaked_locks(rel)
    figures["stale_lockers"] = int(harness.scalar(rel, "SELECT count(*) FROM que_lockers"))
    rec = harness.record("cancel, then kill -9 of the job's worker", adapter.name, figures,
                         injected=procs.killed, cancelled=len(marked), seed=seed,
                         seconds=elapsed())
    harness.assert_clean(rec, rel)
    # Every cancelled job was cancelled by the next claim, not run: no effect.
    assert (marked, effects, requests) == (set(cancelled), 0, 0)
    assert figures["worked"] == len(quick)
