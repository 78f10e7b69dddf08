"""Stopping a sync job inside its worker thread, and only inside its own code.

A job that ran past its ``max_run_time``, or was cancelled, is stopped by an
asynchronous exception raised in its thread (CPython's
``PyThreadState_SetAsyncExc``), which the interpreter raises at the thread's
next bytecode. :class:`Guard` makes sure that it lands in the job's code and
nowhere else: the exception is only ever sent while the thread is between
:meth:`Guard.enter` and :meth:`Guard.leave`, at most once per job, and
``leave`` withdraws one that has not gone off yet, all under one lock. So
the worker's own bookkeeping (claims, outcomes, locks) never sees it.

What an asynchronous exception cannot reach, a thread blocked in C code (a
driver waiting for the server, ``time.sleep``, an extension's loop), is
reached otherwise: the watchdog cancels the session's statement, and when
even that does not bring the thread back, :meth:`Guard.abandon` gives up on
it (see :mod:`que_core.watchdog`).
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Callable

from que_core.errors import JobStopped

_set_async_exc = ctypes.pythonapi.PyThreadState_SetAsyncExc
_set_async_exc.restype = ctypes.c_int


def _send(ident: int, exc_type: type[BaseException] | None) -> int:
    """Raise *exc_type* in thread *ident* at its next bytecode (None:
    withdraw one not raised yet: NULL, which ctypes passes for None).
    Returns how many threads were touched."""
    exc = None if exc_type is None else ctypes.py_object(exc_type)
    return int(_set_async_exc(ctypes.c_ulong(ident), exc))


class Guard:
    """The stretch of one worker thread in which its job's code runs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ident = 0
        self._inside = False
        self._sent = False
        #: Set (while the job ran) when the thread was given up on: once the
        #: job returns, the thread must write nothing and end.
        self.abandoned = False

    def enter(self) -> None:
        """The thread starts its job's code. No lock: a stop sees the thread
        inside only once _inside is set, after the rest (a stop that just
        missed it comes at the next tick)."""
        self._ident = threading.get_ident()
        self._sent = False
        self._inside = True

    def leave(self) -> None:
        """The thread is out of its job's code (idempotent): an exception sent
        that has not gone off yet is withdrawn, and no other can come."""
        with self._lock:
            if self._inside and self._sent:
                _send(self._ident, None)
            self._inside = False

    @property
    def inside(self) -> bool:
        return self._inside

    @property
    def sent(self) -> bool:
        """Whether a stop was raised in the last job's code (it may have gone
        off inside the driver's Python code, mid-protocol)."""
        return self._sent

    def stop(self, exc_type: type[JobStopped], also: Callable[[], None] | None = None) -> bool:
        """From another thread: raise *exc_type* in the job's code, then call
        *also* (cancel its statement) while the thread cannot leave the job.
        False when the job is not running any more."""
        with self._lock:
            if not self._inside:
                return False
            if not self._sent:
                _send(self._ident, exc_type)
                self._sent = True
            if also is not None:
                also()
            return True

    def abandon(self) -> bool:
        """From another thread: give up on the thread, if it is still in its
        job's code (True); False when it came out meanwhile (it writes its own
        outcome then, as usual)."""
        with self._lock:
            if not self._inside:
                return False
            self.abandoned = True
            return True
