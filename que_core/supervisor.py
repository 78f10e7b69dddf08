"""``que work --processes N``: a supervisor and its N worker processes.

The supervisor works no jobs. It starts N children, each a whole worker (its
``--workers`` threads, its own row in ``que_lockers``, its own sessions and
locks), restarts one that dies, passes SIGINT/SIGTERM on, and serves the one
metrics endpoint (:class:`que_core.contrib.prometheus.SupervisorMetrics`).

Children are fresh interpreters started with *command*, not forks: nothing
of the supervisor (threads, sockets, a driver's state) is shared with them.
Each reads its settings from one JSON line on its stdin (so no password is
on a command line), then keeps watching that pipe; on Linux it also asks the
kernel for SIGKILL when the supervisor dies (``PR_SET_PDEATHSIG``). Either
way a child does not outlive the supervisor, and its sessions and advisory
locks go with it. Children are in a process group of their own, so a
terminal's Ctrl-C reaches the supervisor only, and each child gets the
signal once, from it.

Signals: the first SIGINT/SIGTERM is passed to every child, which stops
taking jobs and lets running ones finish within ``--shutdown-timeout`` as
``que work`` does (:mod:`que_core.foreground`); no child is restarted from
then on. The supervisor exits when all have, with status 0, or
:data:`~que_core.foreground.EXIT_UNFINISHED` when a child had jobs
unfinished at the deadline (a child still there :data:`KILL_GRACE` seconds
after it is killed). A second signal is passed on too, and the supervisor
exits at once with :data:`~que_core.foreground.EXIT_SECOND_SIGNAL`, children
still there killed.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import Any

from que_core.foreground import EXIT_SECOND_SIGNAL, EXIT_UNFINISHED, _leave

log = logging.getLogger("que_core.supervisor")

#: A child that ran at least this long before dying is restarted after
#: :data:`FIRST_DELAY`; one that died sooner waits twice as long as the one before
#: it, up to :data:`MAX_DELAY`: a child that cannot start does not spin.
STABLE_AFTER = 10.0
FIRST_DELAY = 0.5
MAX_DELAY = 30.0
#: Seconds past --shutdown-timeout before a child that has not exited is killed.
KILL_GRACE = 10.0
#: How long the supervisor waits for children to exit after a second signal.
SECOND_SIGNAL_WAIT = 2.0
#: The supervisor's loop: how often it looks at its children and signals.
TICK = 0.05

#: What ``que work``'s exit statuses mean, for the log line about a child's exit.
EXIT_MEANINGS = {
    1: "error", 2: "bad usage or configuration", 3: "cannot connect to the database",
    4: "que schema missing, old or too new", EXIT_UNFINISHED: "jobs unfinished at the deadline",
    EXIT_SECOND_SIGNAL: "a second signal",
}

_PR_SET_PDEATHSIG = 1


def describe_exit(returncode: int) -> str:
    """``exited with status 3 (cannot connect to the database)`` or ``was killed by SIGKILL``."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"was killed by {name}"
    meaning = EXIT_MEANINGS.get(returncode)
    return f"exited with status {returncode}" + (f" ({meaning})" if meaning else "")


def restart_delay(failures: int) -> float:
    """Seconds to wait before a restart after *failures* quick deaths in a row (1, 2, ...)."""
    return float(min(MAX_DELAY, FIRST_DELAY * 2 ** max(0, failures - 1)))


@dataclass
class _Slot:
    """One of the N places for a child: the child there now, and its history."""

    number: int
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    failures: int = 0  # quick deaths in a row
    start_at: float = 0.0  # when to start the next child here
    status: int | None = None  # the last child's exit status, once stopping


class Supervisor:
    """Start *processes* children with *command*, each given *payload* as one
    JSON line on its stdin, and keep them running until SIGINT/SIGTERM.

    :param env: the children's environment (default: the supervisor's).
    :param shutdown_timeout: the children's ``--shutdown-timeout``: a child
        still running :data:`KILL_GRACE` seconds after it is killed.
    :param on_exit: called with a child's pid once it has exited (the
        metrics forget its live gauges).
    """

    def __init__(
        self,
        command: Sequence[str],
        payload: Mapping[str, Any],
        processes: int,
        *,
        env: Mapping[str, str] | None = None,
        shutdown_timeout: float | None = None,
        on_exit: Callable[[int], None] | None = None,
    ) -> None:
        if processes < 1:
            raise ValueError(f"processes must be at least 1, not {processes!r}")
        self.command = list(command)
        self.payload = dict(payload)
        self.env = dict(os.environ if env is None else env)
        self.shutdown_timeout = shutdown_timeout
        self.on_exit = on_exit
        self.slots = [_Slot(i + 1) for i in range(processes)]
        self._signals: list[int] = []

    def pids(self) -> list[int]:
        """The pids of the children running now."""
        return [s.proc.pid for s in self.slots if s.proc is not None]

    # -- children ---------------------------------------------------------------

    def _start(self, slot: _Slot) -> None:
        line = json.dumps({**self.payload, "supervisor": os.getpid(), "slot": slot.number})
        try:
            proc = subprocess.Popen(
                self.command, stdin=subprocess.PIPE, env=self.env, start_new_session=True,
            )
        except OSError as exc:  # out of processes or memory, say: try again later
            slot.failures += 1
            delay = restart_delay(slot.failures)
            slot.start_at = time.monotonic() + delay
            log.error("cannot start worker process #%s (%s); trying again in %.1f s",
                      slot.number, exc, delay)
            return
        assert proc.stdin is not None
        try:
            proc.stdin.write(line.encode() + b"\n")
            proc.stdin.flush()
        except BrokenPipeError:  # it died already: reaped and restarted like any other
            pass
        # The pipe stays open: the child exits when it closes (we died).
        slot.proc, slot.started = proc, time.monotonic()
        log.info("started worker process %s (#%s of %s)", proc.pid, slot.number, len(self.slots))

    def _reaped(self, slot: _Slot) -> int | None:
        """The exit status of *slot*'s child if it has exited (then it is gone from the slot)."""
        proc = slot.proc
        if proc is None or proc.poll() is None:
            return None
        slot.proc = None
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
        if self.on_exit is not None:
            try:
                self.on_exit(proc.pid)
            except Exception:  # the metrics' bookkeeping must not stop the supervisor
                log.exception("cleaning up after worker process %s", proc.pid)
        return proc.returncode

    def _restart_later(self, slot: _Slot, pid: int, status: int) -> None:
        now = time.monotonic()
        lived = now - slot.started
        slot.failures = 0 if lived >= STABLE_AFTER else slot.failures + 1
        delay = FIRST_DELAY if slot.failures == 0 else restart_delay(slot.failures)
        slot.start_at = now + delay
        log.warning(
            "worker process %s (#%s) %s after %.1f s; starting another in %.1f s%s",
            pid, slot.number, describe_exit(status), lived, delay,
            f" ({slot.failures} quick exits in a row)" if slot.failures > 1 else "",
            extra={"que_event": "worker_process_exited", "pid": pid, "returncode": status},
        )

    def _send(self, signum: int) -> None:
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    def _kill_all(self) -> None:
        self._send(signal.SIGKILL)
        for slot in self.slots:
            if slot.proc is not None:
                slot.proc.wait()
                self._reaped(slot)

    # -- the loop -----------------------------------------------------------------

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._signals.append(signum)

    def run(self) -> int:
        """Supervise until the children have stopped; return the exit status
        (:mod:`que_core.foreground`'s). Call it from the main thread: the
        children are started by it (the kernel's parent-death signal is about
        the thread that started a child)."""
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            return self._loop()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def _loop(self) -> int:
        stopping_since: float | None = None
        first: int | None = None
        while True:
            while self._signals:
                signum = self._signals.pop(0)
                name = signal.Signals(signum).name
                if first is None:
                    first, stopping_since = signum, time.monotonic()
                    log.info("received %s: passing it on to %s worker process(es), which finish "
                             "their running jobs (a second signal exits at once)",
                             name, len(self.pids()))
                    self._send(signum)
                    continue
                log.warning("received %s again: passing it on and exiting at once with status "
                            "%s; running jobs are abandoned, to be worked again",
                            name, EXIT_SECOND_SIGNAL)
                self._send(signum)
                deadline = time.monotonic() + SECOND_SIGNAL_WAIT
                while self.pids() and time.monotonic() < deadline:
                    for slot in self.slots:
                        self._reaped(slot)
                    time.sleep(TICK / 5)
                self._kill_all()
                return EXIT_SECOND_SIGNAL
            now = time.monotonic()
            for slot in self.slots:
                pid = slot.proc.pid if slot.proc is not None else 0
                status = self._reaped(slot)
                if status is None:
                    continue
                if stopping_since is None:
                    self._restart_later(slot, pid, status)
                else:
                    slot.status = status
                    if status not in (0, EXIT_UNFINISHED) and status != -(first or 0):
                        log.warning("worker process %s (#%s) %s while stopping",
                                    pid, slot.number, describe_exit(status))
            if stopping_since is None:
                for slot in self.slots:
                    if slot.proc is None and now >= slot.start_at:
                        self._start(slot)
            elif not self.pids():
                return self._stopped_status(first or 0)
            elif (self.shutdown_timeout is not None
                  and now - stopping_since > self.shutdown_timeout + KILL_GRACE):
                log.warning("worker process(es) %s still running %.0f s past the shutdown "
                            "deadline: killing them; exiting with status %s",
                            ", ".join(map(str, self.pids())), KILL_GRACE, EXIT_UNFINISHED)
                self._kill_all()
                return EXIT_UNFINISHED
            time.sleep(TICK)

    def _stopped_status(self, signum: int) -> int:
        # A child that died of the signal itself had not set its handlers yet:
        # it was starting, and had no jobs. That is a clean stop too.
        statuses = [s.status for s in self.slots if s.status is not None]
        if any(s == EXIT_UNFINISHED for s in statuses):
            log.warning("exiting with status %s: worker process(es) had jobs unfinished at the "
                        "shutdown deadline; they will be worked again", EXIT_UNFINISHED)
            return EXIT_UNFINISHED
        if all(s in (0, -signum) for s in statuses):
            log.info("all worker processes stopped")
            return 0
        return 1


# -- the child's side ---------------------------------------------------------------


def _read_line(fd: int) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        data += chunk
    return data


def _die_with(supervisor: int) -> None:
    """Ask Linux to SIGKILL this process when the supervisor dies; exit now if it has."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != supervisor:  # it died before we asked
        os._exit(EXIT_SECOND_SIGNAL)


def _watch_stdin(fd: int, supervisor: int) -> None:
    while os.read(fd, 4096):
        pass
    log.warning("the supervisor (pid %s) is gone: exiting at once; running jobs are "
                "abandoned, to be worked again", supervisor)
    _leave(EXIT_SECOND_SIGNAL)


def child_payload(fd: int = 0) -> dict[str, Any]:
    """In a child: read the supervisor's JSON line from *fd* (stdin), make sure
    this process dies with the supervisor, and return the payload (its
    ``supervisor`` and ``slot`` included)."""
    line = _read_line(fd)
    try:
        payload = json.loads(line)
        supervisor = int(payload["supervisor"])
    except (ValueError, KeyError, TypeError):
        raise SystemExit("que work --supervised is started by `que work --processes N`, "
                         "which writes its settings on its stdin") from None
    _die_with(supervisor)
    threading.Thread(target=_watch_stdin, args=(fd, supervisor), daemon=True,
                     name="que-supervisor-watch").start()
    return dict(payload)


# -- the commands' side: que work, flask que work, manage.py que_work ----------------------


def this_command() -> list[str]:
    """The command line that started this process, to start its children with
    (as Django's autoreloader restarts ``runserver``): ``python -m NAME ARGS``
    when it was run with ``-m``, else ``python SCRIPT ARGS``."""
    import __main__

    args = [sys.executable, *(f"-W{o}" for o in sys.warnoptions)]
    spec = getattr(__main__, "__spec__", None)
    if spec is not None:
        name = spec.parent if spec.name.endswith("__main__") and spec.parent else spec.name
        return [*args, "-m", name, *sys.argv[1:]]
    return [*args, sys.argv[0], *sys.argv[1:]]


def supervise(
    command: Sequence[str],
    processes: int,
    *,
    payload: Mapping[str, Any] | None = None,
    shutdown_timeout: float | None = None,
    metrics_port: int | None = None,
    metrics_host: str = "127.0.0.1",
    connect: Callable[[], Any] | None = None,
    queues: Sequence[str] = ("default",),
) -> int:
    """Run a :class:`Supervisor` of *processes* children started with *command*
    (each given *payload*) until they have stopped; return the exit status.
    With *metrics_port*, serve the children's metrics there
    (:class:`~que_core.contrib.prometheus.SupervisorMetrics`; the queue
    gauges of *queues* through *connect*); the children record them when
    they call :func:`record_metrics`."""
    from que_core.errors import ConfigurationError, QueError

    env = dict(os.environ)
    metrics: Any = None
    path = None
    if metrics_port is not None:
        try:
            from que_core.contrib import prometheus
        except ImportError as exc:
            raise ConfigurationError(f"--metrics-port: {exc}") from None
        if connect is None:
            raise ValueError("metrics_port needs connect, for the queue gauges")
        path = tempfile.mkdtemp(prefix="que-metrics-")  # private: mode 0700
        env["PROMETHEUS_MULTIPROC_DIR"] = path
        metrics = prometheus.SupervisorMetrics(path, connect=connect, queues=queues)
    try:
        if metrics is not None:
            try:
                metrics.serve(metrics_port, metrics_host)
            except OSError as exc:
                raise QueError(
                    f"cannot serve metrics on {metrics_host}:{metrics_port}: {exc}") from None
        sup = Supervisor(command, {**(payload or {}), "metrics": metrics is not None},
                         processes, env=env, shutdown_timeout=shutdown_timeout,
                         on_exit=metrics.process_died if metrics is not None else None)
        return sup.run()
    finally:
        if metrics is not None:
            metrics.close()
        if path is not None:
            shutil.rmtree(path, ignore_errors=True)


def record_metrics(payload: Mapping[str, Any]) -> None:
    """In a child (*payload* from :func:`child_payload`): record Prometheus
    metrics for the supervisor's endpoint, if it serves one."""
    if payload.get("metrics"):
        from que_core.contrib import prometheus

        prometheus.install(multiprocess=True)
