"""The jobs one session has claimed, and the outcomes it still has to write.

A worker thread takes its jobs on its own session and runs them there, so a
job's advisory lock lives exactly as long as the session its work is done
on: if that session is lost, the job's lock and anything it had not yet
committed go together, and another worker may take the job at once.

Each :meth:`Claims.next` is one statement (``que_core_next_jobs``, schema
revisions 7.2 and 7.3): it writes the outcomes of the jobs run since the last call,
releases the locks whose outcomes the last call committed, and locks and
returns the next batch. A lock is released only in the call after the one
that committed its job's outcome, so no other session can take a job while
its row still looks waiting. The outcomes are reported (logged, hooks) once
that commit is done.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from que_core import execute, validation
from que_core.connection import AsyncConnection, Connection, Row
from que_core.dispatch import ANY_PRIORITY
from que_core.errors import ConnectionLost, DatabaseError
from que_core.execute import DELETE, RESOLVED, Outcome
from que_core.sql import q

log = logging.getLogger("que_core.worker")


#: SQLSTATE classes of errors that a row's own outcome causes: data
#: exceptions, integrity, a PL/pgSQL RAISE (a user's trigger), rollbacks
#: (deadlock, serialisation). Any other says more about the session.
_ROW_ERRORS = frozenset({"22", "23", "P0", "40"})


class SetAside:
    """Jobs whose outcome could not be written: each is left alone for a
    while (60 s at first, doubling up to an hour), since it would run and
    fail to be saved the same way at every poll. Shared by the threads of a
    worker; another worker tries such a job at most once a period too."""

    FIRST = 60.0
    LONGEST = 3600.0
    MOST = 1000

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: dict[int, tuple[float, float]] = {}  # id -> (until, period)
        self._held: set[int] = set()  # left alone while their outcome is retried

    def hold(self, ids: Iterable[int]) -> None:
        """Leave *ids* alone until :meth:`add` or :meth:`drop`: their outcomes
        are being written again, on a new session."""
        with self._lock:
            self._held.update(ids)

    def drop(self, job_id: int) -> None:
        with self._lock:
            self._held.discard(job_id)

    def add(self, job_id: int) -> None:
        with self._lock:
            self._held.discard(job_id)
            _, period = self._jobs.get(job_id, (0.0, self.FIRST / 2))
            period = min(period * 2, self.LONGEST)
            self._jobs[job_id] = (time.monotonic() + period, period)
            if len(self._jobs) > self.MOST:  # forget the ones due soonest
                for old, _ in sorted(self._jobs.items(), key=lambda kv: kv[1][0])[
                    : len(self._jobs) - self.MOST
                ]:
                    del self._jobs[old]
        log.warning("job %s is set aside for %.0f s", job_id, period)

    def ids(self) -> list[int]:
        """The jobs to leave alone now."""
        if not self._jobs and not self._held:
            return []
        now = time.monotonic()
        with self._lock:
            return [i for i, (until, _) in self._jobs.items() if until > now] + list(self._held)


class Claims:
    """The claims of one session (*conn*) on jobs of *queues* (None: any),
    of the job classes *only* (None: any) but none of *skip* (schema
    revision 7.3: a worker's event loop takes its async def classes, its
    threads the others).

    Not thread-safe: one thread uses it, with its session."""

    def __init__(self, conn: Connection, queues: Sequence[str] | None,
                 set_aside: SetAside | None = None, *,
                 only: Sequence[str] | None = None,
                 skip: Sequence[str] | None = None) -> None:
        self.conn = conn
        self.queues = list(queues) if queues is not None else None
        self.only = sorted(only) if only is not None else None
        self.skip_classes = sorted(skip) if skip else None
        self.set_aside = set_aside or SetAside()
        #: Every job id this session holds the advisory lock of.
        self.held: set[int] = set()
        self._pending: list[Outcome] = []  # to write in the next call
        self._release: list[int] = []  # to unlock in the next call
        #: Per queue, the (priority, run_at, id) of the last job taken from it:
        #: the next walk starts there (see que_core_next_jobs), unless full.
        self.after: dict[str, tuple[int, datetime, int]] = {}

    @property
    def owes(self) -> bool:
        """Whether outcomes or locks are waiting for the next call."""
        return bool(self._pending or self._release)

    def add(self, outcome: Outcome) -> None:
        """*outcome* is written by the next call."""
        self._pending.append(outcome)

    def skip(self, ids: Iterable[int]) -> None:
        """Claimed jobs that were not run (stopping): released by the next call."""
        self._release.extend(i for i in ids if i in self.held)

    def lowest_bound(self) -> int | None:
        """The most important priority a walk starts after, if any: a new job
        more important than that lies before the walk (and needs a full one)."""
        return min((b[0] for b in self.after.values()), default=None)

    def next(self, max_priority: int | None, limit: int, exclude: Iterable[int] = (),
             full: bool = True) -> list[Row]:
        """Write what is owed and claim up to *limit* jobs of priority up to
        *max_priority* (None: any); their rows, most important first. Unless
        *full*, each queue's walk starts after the last job taken from it:
        jobs before it (released by a lost session, more important ones that
        came later) wait for a full walk.

        A :class:`~que_core.errors.DatabaseError` leaves the outcomes owed:
        call :meth:`settle`, then (the session lost or broken) :meth:`recover`
        with a new session."""
        params = self._params(max_priority, limit, exclude, full)
        return self._took(self.conn.execute(q("next_jobs"), params), limit, full)

    def _params(self, max_priority: int | None, limit: int, exclude: Iterable[int],
                full: bool) -> tuple[Any, ...]:
        """The parameters of the next call (see :meth:`next`)."""
        pending, unlock = self._pending, self._release
        finished = [o.job_id for o in pending if o.kind == DELETE]
        others = [o.as_json() for o in pending if o.written]
        excluded = self.held.difference(unlock)
        excluded.update(exclude)
        excluded.update(self.set_aside.ids())
        bounds: list[Any] = [None, None, None]
        if not full and limit > 0 and self.queues and self.after:
            starts = [self.after.get(name) for name in self.queues]
            bounds = [[b[k] if b else None for b in starts] for k in range(3)]
        return (
            finished, validation.dumps(others) if others else None, unlock,
            self.queues, ANY_PRIORITY if max_priority is None else max_priority, limit,
            sorted(excluded), *bounds, self.only, self.skip_classes,
        )

    def _took(self, rows: list[Row], limit: int, full: bool) -> list[Row]:
        """The call with :meth:`_params` returned *rows*: what it wrote,
        released and locked is so now; report the outcomes."""
        pending, unlock = self._pending, self._release
        self._pending, self._release = [], [o.job_id for o in pending]
        self.held.difference_update(unlock)
        self.held.update(r[0] for r in rows)
        if limit > 0:
            if full:
                self.after.clear()
            for row in rows:  # in the order taken: the last of each queue is its bound
                self.after[row[4]] = (row[1], row[2], row[0])
        for outcome in pending:
            execute.report(outcome)
        return rows

    def flush(self) -> None:
        """Write what is owed and release every lock: the session holds none
        after this (two calls: a lock goes only once its outcome is committed)."""
        while self.owes:
            self.next(None, 0)
        if self.held:
            self.skip(self.held)
            self.next(None, 0)

    def lost(self) -> None:
        """The session is gone, and with it every lock: forget it all."""
        ran = [o for o in self._pending if o.kind != RESOLVED]
        if ran:
            log.warning("the session of %s job(s) that ran was lost before their outcomes were "
                        "saved; they will run again: %s", len(ran),
                        ", ".join(str(o.job_id) for o in ran[:20]))
        for outcome in self._pending:
            self.set_aside.drop(outcome.job_id)
        self._pending, self._release = [], []
        self.held.clear()
        self.after.clear()

    def settle(self) -> bool:
        """The last call failed: write the owed outcomes one at a time, on
        the same session, which still holds their locks. One that fails for
        its row's sake (a trigger that refuses it, a constraint, bad data) is
        set aside. Returns True when the others failed in a way that says the
        session itself is broken (a job changed its settings, say): they stay
        owed, for :meth:`recover` on a new session."""
        pending, broken = self._pending, list[Outcome]()
        self._pending = []
        for i, outcome in enumerate(pending):
            self._pending = [outcome]
            try:
                self.next(None, 0)
            except ConnectionLost:
                self._pending = broken + pending[i:]
                raise
            except DatabaseError as exc:
                self._pending = []
                if (exc.sqlstate or "")[:2] in _ROW_ERRORS:
                    execute.report_unsaved(outcome, exc)
                    self.set_aside.add(outcome.job_id)
                    self._release.append(outcome.job_id)
                else:
                    broken.append(outcome)
        self._pending = broken
        return bool(broken)

    def hold(self) -> None:
        """Keep the other threads of this worker off the jobs whose outcomes
        are owed, before the session holding their locks is closed."""
        self.set_aside.hold(o.job_id for o in self._pending)

    def take_over(self, conn: Connection, outcome: Outcome) -> None:
        """This session's thread was given up on while its job was stuck, and
        the session ended: on *conn*, which holds that job's lock already,
        write its *outcome* and the outcomes owed, then release everything.
        A job whose outcome was owed and which another session locked
        meanwhile is theirs: it runs again there (at least once)."""
        owed = self._pending
        self.conn = conn
        self._pending, self._release = [], []
        self.held = {outcome.job_id}
        self.after.clear()
        ids = [o.job_id for o in owed]
        relocked = {r[0] for r in conn.execute(q("relock_jobs"), (ids,))} if ids else set()
        self.held.update(relocked)
        lost = [o.job_id for o in owed if o.job_id not in relocked]
        if lost:
            log.warning("the outcomes of %s job(s) that ran before a stuck one were lost; they "
                        "will run again: %s", len(lost), ", ".join(map(str, lost[:20])))
        self._pending = [o for o in owed if o.job_id in relocked] + [outcome]
        self.flush()

    def recover(self, conn: Connection, why: DatabaseError) -> None:
        """The session was lost, or the last call failed with *why* (a job
        that broke its session, a row that cannot be written): continue on
        the new session *conn* (the old one, closed, took its locks along).
        Each owed outcome whose job this session can lock again is written
        alone; one that still fails is set aside. A job another session
        locked meanwhile is theirs: it runs again there (at least once)."""
        pending = self._pending
        self.conn = conn
        self._pending, self._release = [], []
        self.held.clear()
        self.after.clear()  # what the old session held is free again: walk it all
        if not pending:
            return
        ids = [o.job_id for o in pending]
        try:
            relocked = {r[0] for r in conn.execute(q("relock_jobs"), (ids,))}
            self.held.update(relocked)
            for outcome in pending:
                if outcome.job_id not in relocked:
                    continue
                self._pending = [outcome]
                try:
                    self.next(None, 0)
                except ConnectionLost:
                    raise
                except DatabaseError as exc:
                    self._pending = []
                    execute.report_unsaved(outcome, exc)
                    self.set_aside.add(outcome.job_id)
                    self._release.append(outcome.job_id)
        finally:
            for job_id in ids:  # those set aside for good stay so
                self.set_aside.drop(job_id)
        log.warning("the outcomes of %s job(s) were not written (%s); wrote %s of them on a "
                    "new session", len(pending), why, len(relocked))


class AsyncClaims(Claims):
    """:class:`Claims` on an async session (``que_core.testing.adrain``):
    :meth:`anext` and :meth:`aflush` for ``next`` and ``flush``. Without the
    settling and recovery of a worker's claims: a failed call raises."""

    def __init__(self, conn: AsyncConnection, queues: Sequence[str] | None) -> None:
        super().__init__(None, queues)  # type: ignore[arg-type]
        self.aconn = conn

    async def anext(self, max_priority: int | None, limit: int,
                    exclude: Sequence[int] = ()) -> list[Row]:
        params = self._params(max_priority, limit, exclude, True)
        return self._took(await self.aconn.execute(q("next_jobs"), params), limit, True)

    async def aflush(self) -> None:
        while self.owes:
            await self.anext(None, 0)
        if self.held:
            self.skip(self.held)
            await self.anext(None, 0)
