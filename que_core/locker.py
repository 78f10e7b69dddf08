"""The locker: one thread and one session per worker process that holds the
advisory locks of the jobs the process works.

It polls for ready jobs and locks them, re-checks them in a fresh statement,
feeds them to the job buffer and unlocks jobs once the worker threads have
resolved them. It wakes for messages from the other threads (a job done, a
NOTIFY seen, stop) and for the poll timer, so a worker that finishes a job
is refilled at once.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import random
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from que_core.backoff import retry_connect
from que_core.connection import Connection, Row
from que_core.errors import ConnectionLost, DatabaseError
from que_core.job_buffer import ANY_PRIORITY, Done, JobBuffer, LockedJob
from que_core.sql import q

log = logging.getLogger("que_core.locker")

#: How long a job whose outcome could not be written is left alone, at first
#: and at most (it doubles each time); at most SET_ASIDE_MAX jobs are kept.
SET_ASIDE_FIRST = 60.0
SET_ASIDE_LONGEST = 3600.0
SET_ASIDE_MAX = 1000


def parse_row(row: Row, token: int = 0) -> LockedJob:
    job_id, priority, run_at, job_class, queue_name, error_count, args, kwargs, data = row
    problem = None
    try:
        decoded = (json.loads(args), json.loads(kwargs), json.loads(data))
    except (ValueError, RecursionError) as exc:
        # Nesting deeper than Python's json takes, an integer of more digits
        # than int() converts: the row is the job's problem, not the locker's.
        decoded = ([], {}, {})
        problem = f"its arguments cannot be decoded ({type(exc).__name__}: {exc})"
    if not (isinstance(decoded[0], list) and isinstance(decoded[1], dict)
            and isinstance(decoded[2], dict)):
        decoded = ([], {}, {})
        problem = "its args are not a JSON array, or its kwargs or data not a JSON object"
    return LockedJob(
        priority=priority,
        run_at=run_at,
        id=job_id,
        job_class=job_class,
        queue=queue_name,
        error_count=error_count,
        args=decoded[0],
        kwargs=decoded[1],
        data=decoded[2],
        token=token,
        problem=problem,
    )


class Locker(threading.Thread):
    def __init__(
        self,
        connect: Callable[[], Connection],
        buffer: JobBuffer,
        queues: list[str],
        worker_priorities: list[int | None],
        poll_interval: float,
        stop_event: threading.Event,
    ) -> None:
        super().__init__(name="que-locker", daemon=True)
        self._connect = connect
        self.buffer = buffer
        self.queues = queues
        self.worker_priorities = worker_priorities
        self.max_priority = (
            ANY_PRIORITY
            if any(p is None for p in worker_priorities)
            else max(p for p in worker_priorities if p is not None)
        )
        self.poll_interval = poll_interval
        self._stop_event = stop_event
        self._inbox: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self.conn: Connection | None = None
        #: Backend pid of the locker session; names the LISTEN channel.
        self.pid: int | None = None
        #: The session's token lock (see lock_locker_token in queries.sql).
        self.token = 0
        #: Every job id this session holds the advisory lock of.
        self.held: set[int] = set()
        #: Jobs set aside: id -> (monotonic time until which they are left alone, period).
        self.set_aside: dict[int, tuple[float, float]] = {}
        self._poll_needed: set[str] = set(queues)
        self._urgent: dict[str, int] = {}
        self._deadline: float | None = None
        self.error: BaseException | None = None
        #: Backend pids of the sessions running jobs now (set by the Worker).
        self.running_sessions: Callable[[], list[int]] = list

    # -- called from other threads ---------------------------------------

    def job_done(self, job_id: int, done: Done = Done.UNLOCK) -> None:
        """A worker thread is done with *job_id*; *done* says what to do with it."""
        self._inbox.put(("done", (job_id, done)))

    def notified(self, queue_name: str, priority: int) -> None:
        self._inbox.put(("notify", (queue_name, priority)))

    def listening(self, pid: int, on: bool) -> None:
        self._inbox.put(("listening", (pid, on)))

    def request_stop(self, deadline: float | None) -> None:
        self._inbox.put(("stop", deadline))

    # -- the loop -----------------------------------------------------------

    def open(self) -> None:
        """Open the session and register; called before the thread starts so
        that a bad DSN fails ``Worker.start()`` at once."""
        self.conn = self._connect()
        for version, count in self.conn.execute(q("other_format_jobs")):
            log.warning(
                "%s waiting job(s) have job_schema_version %s; this worker only works "
                "version 2 and will leave them alone",
                count,
                version,
            )
        self._register()

    def run(self) -> None:
        try:
            self._loop()
        except BaseException as exc:  # never die silently: the Worker reports it
            self.error = exc
            log.exception("locker failed")
        finally:
            self._shutdown()

    def _loop(self) -> None:
        next_poll = 0.0
        stopping = False
        while True:
            timeout = 0.05 if stopping else max(0.0, next_poll - time.monotonic())
            done = self._read_inbox(timeout)
            stopping = self._deadline is not None
            try:
                if done["done"]:
                    self._finish(done["done"])
                if stopping:
                    leftover = self.buffer.stop()
                    if leftover:
                        self._unlock([j.id for j in leftover])
                    if not self.held or (
                        self._deadline is not None and time.monotonic() >= self._deadline
                    ):
                        return
                    continue
                for pid, on in done["listening"]:
                    if pid == self.pid:
                        self._require_conn().execute(q("set_locker_listening"), (on, pid))
                        self._poll_needed.update(self.queues)
                if time.monotonic() >= next_poll:
                    self._poll_needed.update(self.queues)
                    next_poll = time.monotonic() + self.poll_interval
                for name in self.queues:
                    if name in self._poll_needed and not self._poll(name):
                        self._poll_needed.discard(name)
            except ConnectionLost as exc:
                log.warning("locker connection lost: %s", exc)
                if not self._reconnect():
                    return

    def _read_inbox(self, timeout: float) -> dict[str, Any]:
        got: dict[str, Any] = {"done": [], "listening": []}
        try:
            item = self._inbox.get(timeout=timeout) if timeout > 0 else self._inbox.get_nowait()
        except queue.Empty:
            return got
        while True:
            kind, value = item
            if kind == "done":
                got["done"].append(value)
            elif kind == "notify":
                name, priority = value
                if name in self.queues:
                    self._poll_needed.add(name)
                    best = self._urgent.get(name)
                    self._urgent[name] = priority if best is None else min(best, priority)
            elif kind == "listening":
                got["listening"].append(value)
            elif kind == "stop":
                self._deadline = value if value is not None else float("inf")
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                return got

    def _poll(self, queue_name: str) -> bool:
        """Lock jobs of *queue_name* into the buffer. True when there may be
        more to lock (the poll filled what it asked for)."""
        conn = self._require_conn()
        urgent = self._urgent.pop(queue_name, None)
        space = self.buffer.space()
        if space > 0 and space < self.buffer.capacity // 2 and urgent is None and len(self.buffer):
            # Wait until half the buffer is free: fewer, larger polls; the
            # jobs still buffered keep the worker threads busy meanwhile.
            return True
        if space > 0:
            limit, max_priority = space, self.max_priority
        else:
            # Full: only a job more important than the least important
            # buffered one may come in, pushing that one out.
            worst = self.buffer.worst_priority()
            if urgent is None or worst is None or urgent >= worst:
                return True
            limit, max_priority = 1, min(self.max_priority, worst - 1)
        ids = [
            r[0]
            for r in conn.execute(
                q("lock_jobs"), (queue_name, max_priority, self._excluded(), limit)
            )
        ]
        if not ids:
            return False
        self.held.update(ids)
        try:
            rows = conn.execute(q("share_and_fetch_locked_jobs"), (ids, ids))
        except ConnectionLost:
            self.held.difference_update(ids)  # gone with the session; no thread runs them
            raise
        jobs = [parse_row(r, self.token) for r in rows]
        fresh = {j.id for j in jobs}
        release = [i for i in ids if i not in fresh]
        release += [j.id for j in self.buffer.push(jobs)]
        if release:
            self._unlock(release)
        return len(ids) >= limit

    def _finish(self, done: list[tuple[int, Done]]) -> None:
        """Delete the finished jobs that returned unresolved, in one
        statement (one commit), then unlock all: a job is unlocked only once
        its DELETE is committed, so no other locker can take it while its row
        is still visible. If the session is lost in between, the jobs not yet
        deleted are simply still waiting and run again (as after a crash)."""
        doomed = [i for i, d in done if d is Done.DELETE and i in self.held]
        if doomed:
            try:
                self._destroy(doomed)
            except ConnectionLost:
                self.held.difference_update(i for i, _ in done)  # their locks are gone
                raise
        self._set_aside([i for i, d in done if d is Done.SET_ASIDE])
        self._unlock([i for i, _ in done])

    def _destroy(self, ids: list[int]) -> None:
        """Delete *ids*; if the batch fails (a deadlock, a user's trigger),
        one by one, so that one row that cannot be deleted does not hold
        back the others (it is set aside: it would run and fail to be
        deleted at every poll)."""
        conn = self._require_conn()
        try:
            conn.execute(q("locker_destroy_jobs"), (ids,))
            return
        except ConnectionLost:
            raise
        except DatabaseError as exc:
            log.warning("deleting %s finished job(s) failed (%s); trying one by one",
                        len(ids), exc)
        for job_id in ids:
            try:
                conn.execute(q("locker_destroy_jobs"), ([job_id],))
            except ConnectionLost:
                raise
            except DatabaseError as exc:
                log.error("job %s: cannot delete it after it ran (%s); it is set aside",
                          job_id, exc)
                self._set_aside([job_id])

    def _set_aside(self, ids: list[int]) -> None:
        """Leave *ids* alone for a while: their outcome could not be written,
        and they would fail the same way at every poll. The period doubles
        each time, up to SET_ASIDE_LONGEST. In this process only: another
        worker tries such a job at most once per period too."""
        now = time.monotonic()
        for job_id in ids:
            _, period = self.set_aside.get(job_id, (0.0, SET_ASIDE_FIRST / 2))
            period = min(period * 2, SET_ASIDE_LONGEST)
            self.set_aside[job_id] = (now + period, period)
            log.warning("job %s is set aside for %.0f s", job_id, period)
        if len(self.set_aside) > SET_ASIDE_MAX:  # forget the ones due soonest
            for job_id, _ in sorted(self.set_aside.items(), key=lambda kv: kv[1][0])[
                : len(self.set_aside) - SET_ASIDE_MAX
            ]:
                del self.set_aside[job_id]

    def _excluded(self) -> list[int]:
        """Job ids a poll must skip: those held, and those set aside."""
        if self.set_aside:
            now = time.monotonic()
            # A period that ended leaves the entry (and its period) for the next
            # failure; the job is simply no longer skipped.
            return sorted(self.held | {i for i, (until, _) in self.set_aside.items()
                                       if until > now})
        return sorted(self.held)

    def _unlock(self, ids: list[int]) -> None:
        mine = [i for i in ids if i in self.held]
        if mine:
            self.held.difference_update(mine)
            self._require_conn().execute(q("unlock_shared_jobs"), (mine,))

    # -- the session --------------------------------------------------------

    def _require_conn(self) -> Connection:
        if self.conn is None or self.conn.closed:
            raise ConnectionLost("locker connection is closed")
        return self.conn

    def _register(self) -> None:
        conn = self._require_conn()
        ((pid,),) = conn.execute(q("backend_pid"))
        while True:
            token = random.randrange(1, 2**31)
            ((ok,),) = conn.execute(q("lock_locker_token"), (token,))
            if ok:
                self.token = token
                break
        conn.execute(q("clean_lockers"), (pid,))
        conn.execute(
            q("register_locker"),
            (
                pid,
                len(self.worker_priorities),
                json.dumps(self.worker_priorities),
                os.getpid(),
                socket.gethostname(),
                json.dumps(self.queues),
                False,  # set once the listener is LISTENing on our channel
            ),
        )
        self.pid = pid
        log.info(
            "locker registered: backend pid %s, queues %s, %s workers",
            pid,
            self.queues,
            len(self.worker_priorities),
        )

    def _reconnect(self) -> bool:
        """A new session after the old one died. Its locks died with it: the
        buffered jobs may now be taken by others, so drop them; lock the
        running ones again (their worker threads' own shared locks kept them
        from being taken meanwhile)."""
        if self.conn is not None:
            self.conn.close()
        self.conn = None
        dropped = self.buffer.clear()
        running = self.held - {j.id for j in dropped}
        self.held = set()
        self.conn = retry_connect(self._connect, self._stop_event, log, "locker")
        if self.conn is None:
            return False
        try:
            self._register()
            for job_id in sorted(running):
                ((ok,),) = self.conn.execute(q("share_lock_job"), (job_id,))
                if ok:
                    self.held.add(job_id)
                else:
                    log.warning("job %s: lock lost with the locker session", job_id)
        except ConnectionLost:
            return self._reconnect()
        self._poll_needed.update(self.queues)
        return True

    def _end_running_sessions(self, conn: Connection) -> None:
        """The shutdown deadline passed with jobs still running: end their
        sessions (their threads cannot be stopped), so that nothing a hung
        job does from now on can commit and its locks go with the locker's."""
        pids = [p for p in self.running_sessions() if p]
        if not pids:
            return
        log.warning("terminating the sessions of %s job(s) still running", len(pids))
        try:
            conn.execute(q("terminate_backends"), (pids,))
            give_up = time.monotonic() + 5
            while time.monotonic() < give_up:
                ((alive,),) = conn.execute(q("backends_alive"), (pids,))
                if not alive:
                    break
                time.sleep(0.02)
        except DatabaseError as exc:
            if isinstance(exc, ConnectionLost):
                raise
            log.warning("cannot terminate the running jobs' sessions: %s", exc)

    def _shutdown(self) -> None:
        self.buffer.stop()  # whatever ended the loop, idle worker threads exit too
        conn, self.conn = self.conn, None
        if conn is None:
            return
        try:
            if not conn.closed and self.pid is not None:
                if self.held and self._deadline is not None and time.monotonic() >= self._deadline:
                    self._end_running_sessions(conn)
                conn.execute(q("unregister_locker"), (self.pid,))
                if self.held:
                    conn.execute(q("unlock_shared_jobs"), (sorted(self.held),))
                    self.held.clear()
                # Released here rather than by the close, which the server
                # finishes a moment after stop() has returned.
                conn.execute(q("unlock_locker_token"), (self.token,))
        except ConnectionLost:
            pass
        finally:
            conn.close()  # releases any lock still held
