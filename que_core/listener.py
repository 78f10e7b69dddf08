"""The listener: a thread and session that LISTENs on the locker's channel.

Que's notify trigger sends ``job_available`` to ``que_listener_<pid>``, where
pid is the locker session's backend pid. A separate session keeps the locker
free to be woken by the worker threads as well; each notification just tells
the locker which queue to poll.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable

from que_core.backoff import retry_connect
from que_core.connection import Connection, Notification
from que_core.errors import ConnectionLost
from que_core.locker import Locker

log = logging.getLogger("que_core.listener")

#: How long one blocking wait lasts before the stop flag is checked again: at
#: most this long is added to Worker.stop() (a wait costs no round trip).
WAIT = 0.1
#: At most one warning about unexpected notifications per this many seconds:
#: any role may NOTIFY our channel, and a flood must not flood the log.
WARN_EVERY = 10.0


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


def channel(pid: int) -> str:
    return f"que_listener_{pid}"


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
        locker: Locker,
        blocking: bool,
        poll_wait: float,
        stop_event: threading.Event,
    ) -> None:
        super().__init__(name="que-listener", daemon=True)
        self._connect = connect
        self.locker = locker
        self.blocking = blocking
        self.poll_wait = poll_wait
        self._stop_event = stop_event
        self.conn: Connection | None = None
        self._listening_to: int | None = None

    def run(self) -> None:
        try:
            while not self._stop_event.is_set():
                try:
                    self._step()
                except ConnectionLost as exc:
                    log.warning("listener connection lost: %s", exc)
                    if self._listening_to is not None:
                        self.locker.listening(self._listening_to, False)
                    self._close()
        except Exception:
            log.exception("listener failed; workers fall back to polling")
            if self._listening_to is not None:  # so that NOTIFYs stop coming our way
                self.locker.listening(self._listening_to, False)
        finally:
            self._close()

    def _step(self) -> None:
        if self.conn is None or self.conn.closed:
            self.conn = retry_connect(self._connect, self._stop_event, log, "listener")
            self._listening_to = None
            if self.conn is None:
                return
        pid = self.locker.pid
        if pid is None:
            self._stop_event.wait(0.05)
            return
        if pid != self._listening_to:
            self.conn.execute("UNLISTEN *")
            self.conn.execute(f'LISTEN "{channel(pid)}"')  # pid is an int: safe to format
            self._listening_to = pid
            self.locker.listening(pid, True)
        if self.blocking:
            notes = self.conn.notifications(WAIT)
        else:
            notes = self.conn.notifications(0)
            if not notes:
                self._stop_event.wait(self.poll_wait)
        for note in notes:
            if note.channel != channel(pid):
                continue
            found = parse(note)
            if found is not None:
                self.locker.notified(*found)

    def _close(self) -> None:
        conn, self.conn = self.conn, None
        self._listening_to = None
        if conn is not None:
            conn.close()
