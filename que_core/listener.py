"""The listener: the worker process's registration in ``que_lockers``, and
the session that LISTENs for new jobs.

Que's notify trigger sends ``job_available`` to ``que_listener_<pid>``, where
pid is the registered session's backend pid: this session's. Each message
wakes one idle worker thread that works its queue and takes its priority
(:mod:`que_core.dispatch`). Without ``listen`` the session only keeps the
registration, and the threads poll.

It also LISTENs on :data:`CONTROL`, where ``que_core_cancel`` says that jobs
were cancelled (the watchdog then looks for those this worker holds) and
``que queues resume`` that a queue was resumed (an idle thread claims).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from que_core.backoff import retry_connect
from que_core.connection import Connection, Notification
from que_core.dispatch import Dispatcher
from que_core.errors import ConnectionLost, DatabaseError
from que_core.sql import q, quoted
from que_core.throughput import Throughput

if TYPE_CHECKING:
    from que_core.watchdog import Watchdog

log = logging.getLogger("que_core.listener")

#: How long one wait for notifications lasts before the stop flag is checked
#: again: at most this long is added to Worker.stop() (a wait costs no round trip).
WAIT = 0.1
#: Where every que-core worker hears of cancelled jobs and resumed queues.
CONTROL = "que_core_control"
#: At most one warning about unexpected notifications per this many seconds:
#: any role may NOTIFY our channel, and a flood must not flood the log.
WARN_EVERY = 10.0


def channel(pid: int) -> str:
    return f"que_listener_{pid}"


class _Throttled:
    """Counts unexpected notifications; warns about the first, then at most
    once per WARN_EVERY seconds with how many came meanwhile."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._next = 0.0
        self._suppressed = 0

    def warn(self, note: Notification) -> None:
        with self._lock:
            now = time.monotonic()
            if now < self._next:
                self._suppressed += 1
                return
            suppressed, self._suppressed = self._suppressed, 0
            self._next = now + WARN_EVERY
        more = f" ({suppressed} more since the last warning)" if suppressed else ""
        log.warning("ignoring unexpected notification on %s: %.200r%s",
                    note.channel, note.payload, more)


_unexpected = _Throttled()


def parse(note: Notification) -> tuple[str, int] | None:
    """(queue, priority) of a job_available message, None for anything else."""
    try:
        msg = json.loads(note.payload)
        if (
            isinstance(msg, dict)
            and msg.get("message_type") == "job_available"
            and isinstance(msg.get("queue"), str)
            and isinstance(msg.get("priority"), int)
            and not isinstance(msg.get("priority"), bool)
        ):
            return msg["queue"], msg["priority"]
    except (ValueError, RecursionError):  # not JSON, or nested deeper than json decodes
        pass
    _unexpected.warn(note)
    return None


class Listener(threading.Thread):
    def __init__(
        self,
        connect: Callable[[], Connection],
        queues: Sequence[str],
        worker_priorities: Sequence[int | None],
        dispatcher: Dispatcher,
        listen: bool,
        stop_event: threading.Event,
        throughput: Throughput | None = None,
        watchdog: Watchdog | None = None,
    ) -> None:
        super().__init__(name="que-listener", daemon=True)
        self.throughput = throughput
        self.watchdog = watchdog
        self._connect = connect
        self.queues = list(queues)
        self.worker_priorities = list(worker_priorities)
        self.dispatcher = dispatcher
        self.listen = listen
        self._stop_event = stop_event
        self.conn: Connection | None = None
        #: Backend pid of the registered session: the que_lockers row's pid.
        self.pid: int | None = None
        self._listening = False
        self._next_poll = 0.0

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
            while not self._stop_event.is_set():
                try:
                    self._step()
                except ConnectionLost as exc:
                    log.warning("listener connection lost: %s", exc)
                    self._close()
        except Exception:
            # The session (and with it the registration) stays until
            # Worker.stop() calls shutdown(): the worker still works.
            log.exception("listener failed; workers fall back to polling")
            if self._listening and self.conn is not None:  # no more NOTIFYs our way
                try:
                    self._set_listening(False)
                except DatabaseError as exc:
                    log.warning("cannot mark the worker not listening: %s", exc)
            return
        self.shutdown()

    def _step(self) -> None:
        if self.conn is None or self.conn.closed:
            self._close()
            self.conn = retry_connect(self._connect, self._stop_event, log, "listener")
            if self.conn is None:
                return
            self._register()
            self.dispatcher.announce()  # jobs may have come while we were away
        if self.throughput is not None and self.throughput.due():
            self.throughput.flush(self.conn)
        if not self.listen:
            self._poll()
            self._stop_event.wait(WAIT)
            return
        assert self.conn is not None and self.pid is not None
        if not self._listening:
            self.conn.execute(quoted(self.conn, "listen_sql", channel(self.pid)))
            self.conn.execute(quoted(self.conn, "listen_sql", CONTROL))
            self._set_listening(True)
            self.dispatcher.announce()  # jobs may have come before we listened
            self._next_poll = 0.0  # and cancels
        for note in self.conn.notifications(WAIT):
            if note.channel == CONTROL:
                self._control(note)
                continue
            if note.channel != channel(self.pid):
                continue
            found = parse(note)
            if found is not None and found[0] in self.queues:
                self.dispatcher.announce(found[1])
        self._poll()

    def _poll(self) -> None:
        """The watchdog's reads (cancel requests, paused queues), on this
        session: when a cancel was heard of, else each POLL_EVERY seconds."""
        now = time.monotonic()
        if self.watchdog is None or self.conn is None or now < self._next_poll:
            return
        from que_core.watchdog import POLL_EVERY

        self._next_poll = now + POLL_EVERY
        self.watchdog.poll(self.conn)

    def _control(self, note: Notification) -> None:
        """A message on CONTROL. Anyone may send one: a cancel makes the
        watchdog read the requests from the database, a resume wakes a thread
        to claim; neither trusts the message further."""
        try:
            msg = json.loads(note.payload)
        except (ValueError, RecursionError):
            msg = None
        kind = msg.get("message_type") if isinstance(msg, dict) else None
        if kind == "cancel":
            self._next_poll = 0.0  # look now
        elif kind == "resume" and isinstance(msg, dict) and msg.get("queue") in self.queues:
            self.dispatcher.announce()
        elif kind not in ("cancel", "resume"):
            _unexpected.warn(note)

    def _set_listening(self, on: bool) -> None:
        assert self.conn is not None
        self.conn.execute(q("set_locker_listening"), (on, self.pid))
        self._listening = on

    def _register(self) -> None:
        assert self.conn is not None
        ((pid,),) = self.conn.execute(q("backend_pid"))
        self.conn.execute(q("clean_lockers"), (pid,))
        self.conn.execute(
            q("register_locker"),
            (
                pid,
                len(self.worker_priorities),
                json.dumps(self.worker_priorities),
                os.getpid(),
                socket.gethostname(),
                json.dumps(self.queues),
                False,  # set once this session LISTENs on its channel
            ),
        )
        self.pid = pid
        self._listening = False
        log.info("worker registered: backend pid %s, queues %s, %s threads",
                 pid, self.queues, len(self.worker_priorities))

    def _close(self) -> None:
        conn, self.conn = self.conn, None
        self._listening = False
        if conn is not None:
            conn.close()

    def shutdown(self, connect: Callable[[], Connection] | None = None) -> None:
        """Remove the registration and close the session; once the thread has
        ended. When the session is gone, on a new one from *connect* (another
        worker would clean the row up at its start anyway)."""
        conn, self.conn = self.conn, None
        try:
            if self.pid is not None and (conn is None or conn.closed) and connect is not None:
                if conn is not None:
                    conn.close()
                conn = connect()
            if self.pid is not None and conn is not None and not conn.closed:
                if self.throughput is not None:
                    self.throughput.flush(conn)
                conn.execute(q("unregister_locker"), (self.pid,))
                self.pid = None
        except DatabaseError as exc:
            log.warning("cannot remove this worker's que_lockers row: %s", exc)
        finally:
            if conn is not None:
                conn.close()


def end_sessions(connect: Callable[[], Connection], pids: list[int]) -> None:
    """End the sessions *pids* (of jobs still running when a worker's shutdown
    deadline passed) and wait until they are gone, so that nothing a hung job
    does from now on can commit and its locks are released. On a session of
    its own: the listener's belongs to the listener thread."""
    if not pids:
        return
    log.warning("terminating the sessions of %s job(s) still running", len(pids))
    try:
        conn = connect()
    except DatabaseError as exc:
        log.warning("cannot terminate the running jobs' sessions: %s", exc)
        return
    try:
        conn.execute(q("terminate_backends"), (pids,))
        give_up = time.monotonic() + 5
        while time.monotonic() < give_up:
            ((alive,),) = conn.execute(q("backends_alive"), (pids,))
            if not alive:
                break
            time.sleep(0.02)
    except DatabaseError as exc:
        log.warning("cannot terminate the running jobs' sessions: %s", exc)
    finally:
        conn.close()
