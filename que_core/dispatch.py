"""Waking idle worker threads when jobs may be waiting.

A worker thread whose last claim found nothing sleeps here until a NOTIFY
says a job came (the listener calls :meth:`Dispatcher.notify`), a thread
that claimed a full batch passes the word on (there may be more), its poll
interval passes, or the worker stops. One notification wakes one thread:
the most restricted idle one that takes the job's priority, so that threads
which take any priority stay free for what comes next.

The generation counter closes the gap between a claim that found nothing and
the sleep after it: a notification that came in between makes the thread
claim again instead of sleeping.
"""

from __future__ import annotations

import threading
from collections import deque

ANY_PRIORITY = 32767
#: The most important priority there is: of a notification of unknown priority.
TOP_PRIORITY = -32768


class Dispatcher:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: dict[threading.Event, int] = {}  # wake event -> max priority
        self._stopped = False
        #: Counts notifications; a thread reads it before it claims.
        self.generation = 0
        #: Dispatchers :meth:`announce` tells too (the event loop's claimer
        #: has its own: a NOTIFY must not wake only a thread that leaves its
        #: job's class alone).
        self.followers: list[Dispatcher] = []
        # (generation, priority) of the latest notifications.
        self._recent: deque[tuple[int, int]] = deque(maxlen=1024)

    def wait(self, wake: threading.Event, max_priority: int | None, seen: int,
             timeout: float, clear: bool = True) -> bool:
        """Sleep until woken or *timeout*, unless a notification came since
        the thread read ``generation`` (*seen*) or the worker stops. False
        when the time ran out (time to poll). Without *clear*, a *wake* the
        caller cleared before it looked and others set since ends the wait."""
        with self._lock:
            if self._stopped or self.generation != seen:
                return True
            if clear:
                wake.clear()
            self._idle[wake] = ANY_PRIORITY if max_priority is None else max_priority
        woken = wake.wait(timeout)
        with self._lock:
            self._idle.pop(wake, None)
        return woken

    def lowest_since(self, seen: int) -> int | None:
        """The most important priority notified since generation *seen*
        (None: no notification since)."""
        with self._lock:
            if self.generation == seen:
                return None
            if not self._recent or self._recent[0][0] > seen + 1:
                return TOP_PRIORITY  # some were forgotten: assume the most important
            return min(p for g, p in self._recent if g > seen)

    def announce(self, priority: int | None = None) -> None:
        """The listener's :meth:`notify`: the followers are told too."""
        for other in self.followers:
            other.notify(priority)
        self.notify(priority)

    def notify(self, priority: int | None = None) -> None:
        """A job of *priority* may be waiting: wake one idle thread that
        takes it (the most restricted such one). None: of unknown priority,
        wake the least restricted idle thread."""
        with self._lock:
            self.generation += 1
            self._recent.append((self.generation, TOP_PRIORITY if priority is None else priority))
            if not self._idle:
                return
            if priority is None:
                best = max(self._idle, key=self._idle.__getitem__)
            else:
                fits = [w for w, limit in self._idle.items() if limit >= priority]
                if not fits:
                    return
                best = min(fits, key=self._idle.__getitem__)
            del self._idle[best]
            best.set()

    def stop(self) -> None:
        """Wake every thread, and keep them from sleeping again."""
        with self._lock:
            self._stopped = True
            for wake in self._idle:
                wake.set()
            self._idle.clear()
