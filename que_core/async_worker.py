"""A worker's ``async def`` jobs: claimed by a thread, run on an event loop.

One thread (``que-async-claims``, a :class:`WorkerThread` of its own kind)
claims jobs of the worker's async job classes on its own session, which
holds their advisory locks, and writes their outcomes with its next claim,
exactly as a worker thread does (:mod:`que_core.claims`, the same
``que_core_next_jobs``, told to take only those classes). It hands each job
to the event loop thread (``que-async-loop``), which runs up to
*concurrency* of them at once, each on an async session of its own (the
job's ``self.conn`` and ``self.db``), kept open for the next job.

Why a claiming thread rather than a claim loop on the event loop: the
claims, their settling after a failed statement, the set-aside jobs and the
session's recovery are the worker threads' own code, unchanged; and a job
that blocks the loop holds up only the async jobs, never the claims and
unlocks, the listener or the sync threads.

The claim lock lives on the claiming session, the job's transaction on its
own: both are the process's, and die with it. So that the claiming session
alone being lost (an administrator ends it, or a server restart that the
job's new session outlived) lets no other worker start a running job, the
job's session holds the job's running lock while it runs (schema revision
7.7): taken before the job starts (``take_running``), and kept only if the
claiming session still holds the claim after (``running_claimed``, one
``pg_locks`` read for the jobs claimed together: :class:`ClaimCheck`); every
que-core claim leaves a job whose running lock is held. The lock is
released with the session's next job, or soon after the session falls idle
(:data:`LINGER`).
The running jobs of a lost claiming session are cancelled once the claimer
notices, at its next statement. A job that resolves itself in its
transaction (``await self.adestroy()`` inside ``async with
self.atransaction()``) has its effect committed once: another worker that
takes the job after a crash finds its row locked by that transaction until
it ends, then gone (:class:`~que_core.job.JobAlreadyResolved`).

A watchdog thread sees the loop not advance (a blocking call in an ``async
def``) and logs the job running then, by class and id.

A job that runs past its ``max_run_time``, or is cancelled (``que jobs
cancel``), is stopped by the worker's :class:`~que_core.watchdog.Watchdog`:
its task is cancelled (``asyncio.CancelledError`` in the job's ``await``) and
its session's statement too, if it runs one; the outcome is the timeout's
error or the cancel, and the session is closed rather than kept. A job that
blocks the loop, or swallows the cancellation, cannot be stopped so: the
loop cannot be replaced as a thread is (the loop watchdog logs it).

At shutdown, running jobs get until the deadline to finish; then they are
cancelled. A cancelled job records no error: its lock is released (after
its session is closed, so nothing of it can commit later) and it runs again
at once, elsewhere or at the next start, as a sync job whose session a
shutdown ended does.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from contextlib import suppress
from typing import Any

from que_core import execute
from que_core.claims import Claims, SetAside
from que_core.connection import AsyncAdapter, AsyncConnection, Connection, Row
from que_core.dispatch import Dispatcher
from que_core.errors import ConnectionLost, DatabaseError
from que_core.execute import Outcome
from que_core.listener import end_sessions
from que_core.sql import q
from que_core.throughput import Throughput
from que_core.watchdog import Running, Watchdog
from que_core.worker_thread import Durations, WorkerThread

log = logging.getLogger("que_core.worker")

#: The loop counts as blocked when it has not run for this long (seconds).
BLOCKED_AFTER = 0.5
#: How often the loop says it runs, and the watchdog looks.
BEAT = 0.05
#: How long the claimer may be left unwoken after a job ended (for more).
GATHER = 0.005
#: After the deadline, how long cancelled jobs get to unwind.
CANCEL_GRACE = 2.0
#: How long an idle session keeps its last job's running lock: a session
#: taken again before releases it in the same statement as it takes the next.
LINGER = 0.05

#: A job that did not run to an outcome (cancelled, or no session for it).
NOT_RUN = None


class EventLoop:
    """An asyncio event loop on a thread of its own, and its watchdog."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="que-async-loop", daemon=True)
        self._watchdog = threading.Thread(target=self._watch, name="que-async-watchdog",
                                          daemon=True)
        self._beat = time.monotonic()
        self._stopped = threading.Event()

    def start(self) -> None:
        self._thread.start()
        self._watchdog.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        heart = self.loop.create_task(self._heartbeat())
        try:
            self.loop.run_forever()
            heart.cancel()
            self.loop.run_until_complete(asyncio.gather(heart, return_exceptions=True))
        finally:
            self._stopped.set()

    async def _heartbeat(self) -> None:
        while True:
            self._beat = time.monotonic()
            await asyncio.sleep(BEAT)

    def submit(self, coro: Any) -> Future[Any]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def _watch(self) -> None:
        blocked_since: float | None = None
        job: Any = None
        while not self._stopped.wait(BEAT):
            lag = time.monotonic() - self._beat
            if lag < BLOCKED_AFTER:
                if blocked_since is not None:
                    log.warning("job %s id=%s blocked the event loop for %.2f s: a blocking "
                                "call inside async def run()?", job_name(job),
                                getattr(job, "id", None), time.monotonic() - blocked_since,
                                extra={"que_event": "loop_unblocked",
                                       "job_class": job_name(job),
                                       "job_id": getattr(job, "id", None)})
                    blocked_since = None
                continue
            if blocked_since is None:
                blocked_since = self._beat
                job = self._running_job()
                log.warning("job %s id=%s is blocking the event loop (%.2f s so far): the "
                            "other async jobs wait; the threads go on", job_name(job),
                            getattr(job, "id", None), lag,
                            extra={"que_event": "loop_blocked", "job_class": job_name(job),
                                   "job_id": getattr(job, "id", None)})

    def _running_job(self) -> Any:
        """The job whose coroutine is on the loop thread's stack now, if any."""
        frame = sys._current_frames().get(self._thread.ident or -1)
        while frame is not None:
            if frame.f_code is execute.arun.__code__:
                return frame.f_locals.get("job")
            frame = frame.f_back
        return None

    def stop(self) -> None:
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        if not self._thread.is_alive():
            self.loop.close()


def job_name(job: Any) -> str:
    return str(getattr(job, "job_class", None) or "(unknown: no job's code on the loop's stack)")


class Sessions:
    """The async sessions of the jobs (one per job running, kept for the
    next), used on the event loop only."""

    def __init__(self, adapter: AsyncAdapter, dsn: str) -> None:
        self.adapter = adapter
        self.dsn = dsn
        self._idle: list[AsyncConnection] = []
        #: Backend pid of every open session (to end them if jobs hang).
        self.pids: dict[AsyncConnection, int] = {}
        #: The job whose running lock an idle session still holds.
        self.lingering: dict[AsyncConnection, int] = {}

    async def take(self) -> AsyncConnection:
        while self._idle:
            conn = self._idle.pop()
            if not conn.closed:
                return conn
            self.pids.pop(conn, None)
            self.lingering.pop(conn, None)
        conn = await self.adapter.aconnect(self.dsn)
        try:
            ((self.pids[conn],),) = await conn.execute(q("backend_pid"))
        except BaseException:
            await self.drop(conn)
            raise
        return conn

    async def hold(self, conn: AsyncConnection, job_id: int | None) -> bool:
        """Take *job_id*'s running lock on *conn*, releasing the one it kept
        (*job_id* None: only that): whether it was taken (the claim is
        checked after, by :class:`ClaimCheck`)."""
        release = self.lingering.pop(conn, None)
        if job_id is None and release is None:
            return False
        ((_, ok),) = await conn.execute(q("take_running"), (release, release, job_id, job_id))
        return job_id is not None and bool(ok)

    async def hold_claimed(self, conn: AsyncConnection, job_id: int, claimer: int) -> bool:
        """As :meth:`hold`, and the claim checked in the same statement
        (session *claimer* holds it): whether the job may run (if not, its
        running lock is not kept). For a job claimed alone."""
        release = self.lingering.pop(conn, None)
        ((ok,),) = await conn.execute(q("hold_running"), (job_id, claimer, release))
        return bool(ok)

    async def let_go(self, conn: AsyncConnection, job_id: int) -> None:
        """*conn* took *job_id*'s running lock for a job that does not run:
        released now (another worker may have the job), *conn* given back."""
        self.lingering[conn] = job_id
        await self._release(conn)

    def give_back(self, conn: AsyncConnection, job_id: int | None) -> None:
        """*conn* is free again, holding *job_id*'s running lock until its
        next job, or for :data:`LINGER`."""
        self._idle.append(conn)
        if job_id is not None:
            self.lingering[conn] = job_id
            asyncio.get_running_loop().call_later(LINGER, self._linger_over, conn, job_id)

    def _linger_over(self, conn: AsyncConnection, job_id: int) -> None:
        if self.lingering.get(conn) == job_id and conn in self._idle:
            self._idle.remove(conn)  # not taken while it releases
            asyncio.get_running_loop().create_task(self._release(conn))

    async def _release(self, conn: AsyncConnection) -> None:
        try:
            await self.hold(conn, None)
        except DatabaseError:
            await self.drop(conn)
            return
        if not conn.closed:
            self._idle.append(conn)

    async def drop(self, conn: AsyncConnection) -> None:
        self.pids.pop(conn, None)
        self.lingering.pop(conn, None)
        with suppress(DatabaseError):
            await conn.close()

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            await self.drop(conn)


class ClaimCheck:
    """Whether the claims of the jobs handed to the loop together still hold,
    asked once for them all (on the loop only). Each job's task takes its
    running lock on its own session, then :meth:`claimed`; once every task
    of the batch has (or left), one statement (``running_claimed``, a
    ``pg_locks`` read) on one of their sessions answers for all: every
    running lock was taken before it, as each job's own check did in
    revision 7.7's ``que_core_hold_running``."""

    def __init__(self, claimer: int | None, jobs: Sequence[int]) -> None:
        self.claimer = claimer
        #: A batch of one: its task takes the lock and checks the claim in
        #: one statement (``hold_running``), one round trip, not two.
        self.alone = len(jobs) == 1
        # Not done taking their locks yet (none to wait for alone).
        self._waiting = set() if self.alone else set(jobs)
        self._held: dict[int, AsyncConnection] = {}
        self._answer: asyncio.Future[frozenset[int]] = (
            asyncio.get_running_loop().create_future())
        #: The session the statement runs on, while it does.
        self.checking: AsyncConnection | None = None

    async def claimed(self, job_id: int, conn: AsyncConnection | None) -> bool:
        """*job_id*'s running lock is held on *conn* (None: it was not
        taken): wait for the batch's answer, whether its claim holds."""
        if conn is not None:
            self._held[job_id] = conn
        self.leave(job_id)
        return job_id in await asyncio.shield(self._answer)

    def leave(self, job_id: int, task: object = None) -> None:
        """*job_id*'s task is done taking its lock, or gave up, or ended (a
        task cancelled before it began leaves so, through its done callback)."""
        if job_id in self._waiting:
            self._waiting.discard(job_id)
            if not self._waiting:
                asyncio.get_running_loop().create_task(self._check())

    async def _check(self) -> None:
        held: frozenset[int] = frozenset()
        try:
            conns = [c for c in self._held.values() if not c.closed]
            if conns and self.claimer is not None:
                self.checking = conns[0]
                rows = await conns[0].execute(q("running_claimed"),
                                              (self.claimer, list(self._held)))
                held = frozenset(int(r[0]) for r in rows)
        except DatabaseError as exc:  # none runs: each releases its lock
            log.warning("checking the claims of async jobs %s: %s; released, they run again",
                        ", ".join(map(str, self._held)), exc)
        finally:
            self.checking = None
            self._answer.set_result(held)

    async def forget(self, conn: AsyncConnection) -> None:
        """*conn* is to be closed: not used for the statement, or once it
        is off it."""
        self._held = {j: c for j, c in self._held.items() if c is not conn}
        if self.checking is conn:
            await asyncio.shield(self._answer)


class AsyncClaimer(WorkerThread):
    """Claims the worker's async def jobs and runs them on *loop*, at most
    *concurrency* at once (see the module's docstring)."""

    def __init__(self, connect: Callable[[], Connection], queues: Sequence[str],
                 dispatcher: Dispatcher, loop: EventLoop, sessions: Sessions, *,
                 classes: Sequence[str], concurrency: int, poll_interval: float,
                 set_aside: SetAside, stopping: threading.Event,
                 stop_event: threading.Event, throughput: Throughput | None = None,
                 watchdog: Watchdog | None = None, max_run_time: float | None = None) -> None:
        super().__init__(0, None, connect, queues, dispatcher, batch_size=concurrency,
                         poll_interval=poll_interval, durations=Durations(),
                         set_aside=set_aside, throughput=throughput, stopping=stopping,
                         stop_event=stop_event, name="que-async-claims", watchdog=watchdog,
                         max_run_time=max_run_time)
        self.classes = sorted(classes)
        self.concurrency = concurrency
        self.loop = loop
        self.sessions = sessions
        #: When the running jobs are cancelled at shutdown (None: never).
        self.deadline: float | None = None
        #: The ids of the running jobs (claimer's thread).
        self.running: set[int] = set()
        self._tasks: dict[int, asyncio.Task[Any]] = {}  # the loop's only
        #: Ended jobs worth waking the claimer for at once (fewer: GATHER later).
        self._enough = max(1, concurrency // 2)
        self._nudging = False  # the loop's: a wake-up is due in GATHER
        self._done: collections.deque[tuple[int, Outcome | None]] = collections.deque()
        #: Jobs still running when the grace after the deadline ran out.
        self.hung: list[int] = []
        #: How many jobs were cancelled at the deadline.
        self.cancelled = 0

    def _claims(self, conn: Connection) -> Claims:
        return Claims(conn, self.queues, self.set_aside, only=self.classes)

    # -- one claim ---------------------------------------------------------------------

    def _cycle(self) -> None:
        assert self.claims is not None
        self._wake.clear()  # set by a job that ends from here on
        self._collect()
        seen = self.dispatcher.generation
        free = self.concurrency - len(self.running)
        if free <= 0:
            self._wake.wait(self.poll_interval)  # until jobs end (see _ended)
            return
        # Its own running jobs excluded: a lost session's, released, are
        # still running (cancelled) on the loop.
        rows = self.claims.next(None, free, self.running, full=self._full)
        self._full = False
        self._start(rows)
        if rows and len(rows) >= free:
            return  # full: claim again as soon as jobs end
        while self.claims.owes:  # outcomes written and their locks released
            self.claims.next(None, 0)
        if not self.running and self.claims.held:
            self.claims.flush()
        if self._done:
            return
        polled = not self.dispatcher.wait(self._wake, None, seen, self.poll_interval,
                                          clear=False)
        self._full = polled or self.dispatcher.generation != seen

    def _start(self, rows: list[Row]) -> None:
        """Hand *rows* to the loop (one wake-up of its thread for them all)."""
        if not rows:
            return
        self.running.update(row[0] for row in rows)
        # The session that holds their claims now (a new one after a loss).
        self.loop.loop.call_soon_threadsafe(self._spawn, rows, self.backend_pid)

    def _spawn(self, rows: list[Row], claimer: int | None) -> None:
        """On the loop: a task per row, its end told to the claimer."""
        check = ClaimCheck(claimer, [row[0] for row in rows])
        for row in rows:
            task = self.loop.loop.create_task(self._run_job(row, check))
            self._tasks[row[0]] = task
            task.add_done_callback(functools.partial(check.leave, row[0]))
            task.add_done_callback(functools.partial(self._ended, row[0]))

    def _ended(self, job_id: int, task: asyncio.Task[Any]) -> None:
        self._tasks.pop(job_id, None)
        outcome = NOT_RUN
        if not task.cancelled():
            if task.exception() is not None:  # not the job's: execute.arun keeps those
                log.error("job %s: unexpected error running it; released", job_id,
                          exc_info=task.exception())
            else:
                outcome = task.result()
        self._done.append((job_id, outcome))
        # Woken once for several ended jobs, to write their outcomes and fill
        # their slots in one call: at once when enough ended (or all), else
        # GATHER later.
        if len(self._done) >= min(self._enough, len(self.running)):
            self._wake.set()
        elif not self._nudging:
            self._nudging = True
            self.loop.loop.call_later(GATHER, self._nudge)

    def _nudge(self) -> None:
        self._nudging = False
        self._wake.set()

    def _cancel(self) -> None:
        """Cancel every running job (from the claimer's thread)."""
        def cancel() -> None:
            for task in list(self._tasks.values()):
                task.cancel()

        self.loop.loop.call_soon_threadsafe(cancel)

    def _collect(self) -> None:
        """Take the outcomes of the jobs that ended; those that did not run
        to one are released, nothing recorded."""
        assert self.claims is not None
        while self._done:
            job_id, outcome = self._done.popleft()
            self.running.discard(job_id)
            if outcome is NOT_RUN:
                self.claims.skip([job_id])
            else:
                self.claims.add(outcome)
                if self.throughput is not None:  # (ended a moment before: close enough)
                    self.throughput.observe(outcome.job.queue, outcome.job.run_at,
                                            outcome.duration,
                                            outcome.kind in (execute.ERROR, execute.EXPIRE))

    async def _run_job(self, row: Row, check: ClaimCheck) -> Outcome | None:
        """Run one job on a session of its own, which holds its running lock;
        NOT_RUN when it was cancelled, its claim was lost before it started
        or no session could be had."""
        try:
            conn = await self.sessions.take()
        except BaseException as exc:
            check.leave(row[0])
            if not isinstance(exc, DatabaseError):
                raise
            log.warning("job %s: no session to run it on (%s); released, it runs again",
                        row[0], exc)
            await asyncio.sleep(1.0)  # not at once into the same failure
            return NOT_RUN
        try:
            held = await self._hold(row[0], conn, check)
        except asyncio.CancelledError:
            # (At the deadline, say.) Its statement cut short: the session is
            # closed, not kept, once the batch's check is off it.
            await asyncio.shield(self._drop_checked(conn, check))
            raise
        if held is None:  # the session failed
            return NOT_RUN
        if not held:
            log.warning("job %s: its claim was lost before it started (the claiming session "
                        "ended); not run here", row[0])
            return NOT_RUN
        job = execute.build(row, conn, for_async=True)
        running = self._watch(job, conn)
        try:
            outcome = await execute.arun(job)
        except asyncio.CancelledError:
            # Closed before its lock is released: nothing it began can
            # commit once another session may take the job.
            await asyncio.shield(self.sessions.drop(conn))
            log.warning("job cancelled: %s id=%s; its lock released, it runs again",
                        job.job_class, job.id)
            return NOT_RUN
        finally:
            if running is not None and self.watchdog is not None:
                self.watchdog.unregister(running)
        if job._stop is not None:  # stopped mid-await: its session is not reused
            # Not awaited: a cancel of the stop's still pending must not land here.
            self.loop.loop.create_task(self.sessions.drop(conn))
            return outcome
        if conn.closed:  # lost, or closed by the job: its transactions ended with it
            await self.sessions.drop(conn)
            return outcome
        try:
            if await conn.reset():
                log.warning("job %s left its session inside a transaction block: rolled back",
                            job.id)
                outcome = execute.left_in_transaction(outcome)
        except DatabaseError:
            await self.sessions.drop(conn)
            return outcome
        self.sessions.give_back(conn, job.id)
        return outcome

    async def _hold(self, job_id: int, conn: AsyncConnection, check: ClaimCheck
                    ) -> bool | None:
        """Take *job_id*'s running lock on *conn*, then learn from *check*
        whether its claim still holds: True, the job may run; False, it may
        not (nothing of it kept, *conn* given back); None: *conn* failed (dropped)."""
        claimer, left = check.claimer, False
        try:
            if claimer is None:  # no claiming session known to check
                claimed = False
            elif check.alone:  # one statement does both
                claimed = await self.sessions.hold_claimed(conn, job_id, claimer)
            else:
                took = await self.sessions.hold(conn, job_id)
                left = True
                claimed = await check.claimed(job_id, conn if took else None)
                if not claimed and took:
                    await self.sessions.let_go(conn, job_id)
                    return False
        except DatabaseError as exc:
            await self.sessions.drop(conn)
            log.warning("job %s: its session failed before it ran (%s); released, it runs "
                        "again", job_id, exc)
            return None
        finally:
            if not left:
                check.leave(job_id)
        if not claimed:
            self.sessions.give_back(conn, None)
        return claimed

    async def _drop_checked(self, conn: AsyncConnection, check: ClaimCheck) -> None:
        await check.forget(conn)
        await self.sessions.drop(conn)

    def _watch(self, job: Any, conn: AsyncConnection) -> Running | None:
        """Register *job* with the watchdog (on the loop, in its task): to
        stop it, its task is cancelled and its statement too."""
        watchdog, task = self.watchdog, asyncio.current_task()
        if watchdog is None or task is None or job.id is None:
            return None
        loop, pid = self.loop.loop, self.sessions.pids.get(conn)

        def interrupt(why: type[BaseException]) -> bool:
            if task.done():
                return False
            loop.call_soon_threadsafe(task.cancel)
            if pid is not None:
                watchdog.cancel_statement(pid)
            return True

        return watchdog.register(Running(job, execute.max_run_time(job, self.max_run_time),
                                         interrupt, None))

    def _recover(self, why: DatabaseError) -> None:
        """The claiming session was replaced: if it was lost, so were the
        locks of the running jobs, which another worker may take now; they
        are cancelled (their transactions roll back, nothing recorded)."""
        if isinstance(why, ConnectionLost) and self.running:
            log.warning("the async jobs' claiming session was lost: cancelling the %s "
                        "running job(s), whose locks went with it", len(self.running))
            self._cancel()
        super()._recover(why)

    # -- stopping ------------------------------------------------------------------------

    def _finish(self) -> None:
        """Let the running jobs end until the deadline, cancel the rest, then
        write the outcomes and release every lock (the hung jobs' excepted:
        :meth:`AsyncWorker.stop` ends their sessions)."""
        self._wait_running(self.deadline)
        if self.running:
            self.cancelled = len(self.running)
            log.warning("shutdown deadline passed with %s async job(s) still running: "
                        "cancelling them", len(self.running))
            self._cancel()
            self._wait_running(time.monotonic() + CANCEL_GRACE)
        self.hung = list(self.running)
        if self.hung:
            log.warning("async job(s) %s did not end when cancelled (blocking the loop?)",
                        ", ".join(map(str, self.hung)))
            if self.claims is not None:
                self.claims.held.difference_update(self.hung)  # theirs: ended with the session
            return
        super()._finish()

    def _wait_running(self, until: float | None) -> None:
        while self.running:
            self._collect()
            if not self.running:
                break
            left = None if until is None else until - time.monotonic()
            if left is not None and left <= 0:
                break
            self._wake.wait(0.1 if left is None else min(left, 0.1))
            self._wake.clear()
        self._collect()


class AsyncWorker:
    """A worker's event loop, its claiming thread and its sessions."""

    def __init__(self, adapter: AsyncAdapter, dsn: str, connect: Callable[[], Connection],
                 queues: Sequence[str], classes: Sequence[str], *, concurrency: int,
                 poll_interval: float, set_aside: SetAside, stopping: threading.Event,
                 stop_event: threading.Event, throughput: Throughput | None = None,
                 watchdog: Watchdog | None = None, max_run_time: float | None = None) -> None:
        self.adapter = adapter
        self.loop = EventLoop()
        self.sessions = Sessions(adapter, dsn)
        self.dispatcher = Dispatcher()
        self._connect = connect
        self.claimer = AsyncClaimer(connect, queues, self.dispatcher, self.loop, self.sessions,
                                    classes=classes, concurrency=concurrency,
                                    poll_interval=poll_interval, set_aside=set_aside,
                                    stopping=stopping, stop_event=stop_event,
                                    throughput=throughput, watchdog=watchdog,
                                    max_run_time=max_run_time)

    def start(self) -> None:
        self.loop.start()
        self.claimer.start()

    def busy_count(self) -> int:
        return len(self.claimer.running)

    def stopping(self, deadline: float | None) -> None:
        """The worker stops: running jobs are cancelled at *deadline*."""
        self.claimer.deadline = deadline
        self.dispatcher.stop()
        self.claimer._wake.set()

    def stop(self, deadline: float | None) -> bool:
        """Wait for the claimer (the jobs' deadline and grace, then a little);
        end the sessions of jobs that would not end. True if every job
        finished (none was cancelled)."""
        wait = None if deadline is None else max(0.0, deadline - time.monotonic()) + CANCEL_GRACE
        self.claimer.join(None if wait is None else wait + 1.0)
        hung = self.claimer.is_alive() or bool(self.claimer.hung)
        if hung:
            # The jobs' sessions first: their transactions roll back before
            # the claimer's session, ending, frees their locks.
            end_sessions(self._connect, list(self.sessions.pids.values()))
            end_sessions(self._connect, [self.claimer.backend_pid]
                         if self.claimer.backend_pid else [])
        elif not self.loop.loop.is_closed():
            try:
                self.loop.submit(self.sessions.close()).result(5)
            except Exception as exc:  # a session that will not close: the process ends soon
                log.warning("closing the async jobs' sessions: %s", exc)
        self.loop.stop()
        return not hung and not self.claimer.cancelled
