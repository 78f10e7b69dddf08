"""A PostgreSQL restart (clean and crash) while worker processes run, on a
throwaway server this module starts itself."""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import pytest

from conformance.fixtures import scalar, wait_until
from que_core import migrate
from que_core.connection import Adapter
from que_core.errors import CannotConnect
from que_core.testing import databases
from tests.reliability import harness
from tests.reliability.harness import scaled
from tests.reliability.rjobs import Effect
from tests.reliability.test_fault_kill9 import enqueue_mix
from tests.reliability.throwaway import ThrowawayServer, find_bindir

# the core meets each driver here
pytestmark = pytest.mark.per_adapter

JOBS = scaled(300, 3000)
RESTARTS = scaled(2, 8)


@pytest.fixture(scope="module")
def server() -> Iterator[ThrowawayServer]:
    if find_bindir() is None:
        pytest.skip("no PostgreSQL binaries to start a throwaway server with")
    s = ThrowawayServer()
    try:
        yield s
    finally:
        s.close()


@pytest.mark.slow
@pytest.mark.timeout(scaled(240, 1800))
def test_postgresql_restart_while_workers_run(adapter: Adapter, server: ThrowawayServer) -> None:
    down = server.ensure_running()
    if down is not None:  # say so, with the log: a test of before left it down
        warnings.warn(f"the throwaway server was down; started it again. Its log:\n{down}",
                      stacklevel=1)
    rng, seed = harness.seeded_rng()
    elapsed = harness.timer()
    dsn = databases.create_database(adapter, server.dsn, prefix="que_rel")
    conn = adapter.connect(dsn)
    migrate(conn)
    harness.setup_tables(conn)
    ids = enqueue_mix(conn, JOBS, rng)
    harness.expect(conn, ids)
    procs = harness.WorkerProcs(dsn, adapter, conn)
    try:
        for _ in range(3):
            procs.spawn()
        wait_until(lambda: scalar(conn, "SELECT count(*) FROM que_lockers") == 3,
                         within=60, what="three workers registered")
        modes = []
        stale = 0
        for i in range(RESTARTS):
            harness.random_pause(rng, 0.5, 2.0)
            conn.close()
            modes.append(server.restart("immediate" if i % 2 else "fast"))
            conn = server.wait_ready(lambda: adapter.connect(dsn))
            procs.checker = conn
            # Once the workers are back, no row of a session of before the restart is left.
            wait_until(lambda conn=conn: scalar(
                conn, "SELECT count(*) FROM que_lockers WHERE pid IN "
                "(SELECT pid FROM pg_stat_activity)") == 3, within=60,
                what="the three workers registered again")
            stale += harness.dead_lockers(conn)
            # Every session of before the restart ended before the server started again.
            conn.execute("INSERT INTO rel_faults (kind, at) VALUES ('server', "
                         "pg_postmaster_start_time())")
            # new jobs after the restart, through NOTIFY once the listeners are back
            more = [j.id for j in Effect.enqueue_many([[] for _ in range(20)], conn=conn.raw)]
            harness.expect(conn, [i for i in more if i is not None])
        wait_until(
            lambda: scalar(
                conn, "SELECT count(*) FROM que_jobs j JOIN rel_expected e ON e.job_id = j.id"
            ) == 0,
            within=scaled(120, 900), interval=0.3, what="all jobs worked",
        )
        alive = len(procs.alive())
        codes = procs.terminate_all()
        figures = harness.invariants(conn)
        figures["leaked_locks"] = harness.leaked_locks(conn)
        figures["stale_lockers"] = stale + int(scalar(
            conn, "SELECT count(*) FROM que_lockers"))
        rec = harness.record(
            "PostgreSQL restart", adapter.name, figures, injected=len(modes),
            restarts=len(modes), modes=modes, workers_survived=alive, seed=seed,
            seconds=elapsed(),
        )
        harness.assert_clean(rec, conn)
        assert alive == 3, procs.log_tail()
        assert all(c == 0 for c in codes), (codes, procs.log_tail())
        assert figures["worked"] == figures["jobs"]
    finally:
        procs.close()
        conn.close()
        # The cluster goes with the module; a server that went down since the
        # last check loses nothing of this test's, so say so rather than fail.
        try:
            databases.drop_database(adapter, server.dsn, dsn)
        except CannotConnect as exc:
            warnings.warn(f"could not drop {dsn} ({exc}); server running: "
                          f"{server.running()}. Its log:\n{server.log_tail()}", stacklevel=1)
