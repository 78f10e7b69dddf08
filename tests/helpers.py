"""Small helpers of the tests, on the kit they share with conformance/
(:mod:`conformance.fixtures`: ``scalar``, ``wait_until``, the fixtures)."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, TypeVar

import pytest

from conformance.fixtures import scalar
from conformance.jobs import LOG_TABLE
from que_core import migrate, plugins
from que_core.connection import Adapter, Connection
from que_core.testing import databases

T = TypeVar("T")
ROOT = Path(__file__).resolve().parent.parent


@contextmanager
def migrated_database(adapter: str = "psycopg", server: str | None = None) -> Iterator[str]:
    """A migrated database of its own on *server* (the test server); dropped
    afterwards."""
    a = plugins.get_adapter(adapter)
    with databases.temporary_database(a, server or databases.server_dsn()) as dsn:
        conn = a.connect(dsn)
        try:
            migrate(conn)
        finally:
            conn.close()
        yield dsn


def migrated_dsn(name: str, scope: Literal["function", "module"] = "function") -> Any:
    """A fixture *name*: the DSN of a :func:`migrated_database` (psycopg) per *scope*."""

    @pytest.fixture(name=name, scope=scope)
    def fixture() -> Iterator[str]:
        with migrated_database() as dsn:
            yield dsn

    return fixture


@contextmanager
def logged_database(adapter: str = "psycopg", server: str | None = None
                    ) -> Iterator[tuple[str, Connection]]:
    """A migrated database of its own with the conformance_log table, and a
    session of *adapter* on it; dropped afterwards."""
    with migrated_database(adapter, server) as dsn:
        conn = plugins.get_adapter(adapter).connect(dsn)
        try:
            conn.execute(LOG_TABLE)
            yield dsn, conn
        finally:
            conn.close()


def session(adapter: Adapter, dsn: str) -> Iterator[Connection]:
    """A session of *adapter* on *dsn*, closed after: a fixture's
    ``yield from session(adapter, dsn)``."""
    conn = adapter.connect(dsn)
    try:
        yield conn
    finally:
        conn.close()


def end_process(proc: subprocess.Popen[Any]) -> None:
    """Kill *proc* if it still runs, reap it and close its output pipe."""
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)
    if proc.stdout:
        proc.stdout.close()


@contextmanager
def que_work_processes(
    dsn: str, adapter: str, modules: tuple[str, ...], interval: str = "0.2",
    env: dict[str, str] | None = None, quiet: bool = False, graceful: bool = False,
) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """A function that starts ``que work ... *modules*`` subprocesses (their
    output piped, or with *quiet* discarded); at the end each is killed, or
    with *graceful* sent SIGTERM and given 15 s first."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(*extra: str) -> subprocess.Popen[bytes]:
        cmd = [sys.executable, "-m", "que_core.cli", "work", "--dsn", dsn,
               "--adapter", adapter, "-i", interval, *extra, *modules]
        out = subprocess.DEVNULL if quiet else subprocess.PIPE
        p = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out,
                             stderr=subprocess.DEVNULL if quiet else subprocess.STDOUT)
        procs.append(p)
        return p

    try:
        yield start
    finally:
        for p in procs:
            if p.poll() is None:
                if graceful:
                    p.terminate()
                else:
                    p.kill()
        for p in procs:
            try:
                p.wait(15 if graceful else 10)
            except subprocess.TimeoutExpired:
                if not graceful:
                    raise
                p.kill()
            if p.stdout:
                p.stdout.close()


class Collected:
    """*argv* in a subprocess, its stderr collected line by line in ``lines``
    (without the newline), its stdout discarded; with *merged*, both collected."""

    def __init__(self, argv: list[str], env: dict[str, str], merged: bool = False) -> None:
        self.proc = subprocess.Popen(
            argv, cwd=ROOT, env=env, text=True,
            stdout=subprocess.PIPE if merged else subprocess.DEVNULL,
            stderr=subprocess.STDOUT if merged else subprocess.PIPE,
        )
        self._output = self.proc.stdout if merged else self.proc.stderr
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self._output is not None
        for line in self._output:
            self.lines.append(line.rstrip("\n"))

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def stop(self) -> int:
        """SIGTERM (if it still runs); its exit code, once its output is read."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(30)
        self._reader.join(5)
        assert self._output is not None
        self._output.close()
        return code


class QueWork(Collected):
    """``que work *args*``, its stderr collected."""

    def __init__(self, *args: str, env: dict[str, str]) -> None:
        super().__init__([sys.executable, "-m", "que_core.cli", "work", *args], env)


def job_count(conn: Connection) -> int:
    return int(scalar(conn, "SELECT count(*) FROM que_jobs"))


def log_tags(conn: Connection, event: str = "ran") -> list[str]:
    rows = conn.execute("SELECT tag FROM conformance_log WHERE event = %s ORDER BY seq", (event,))
    return [r[0] for r in rows]


def advisory_locks(conn: Connection) -> int:
    return int(
        scalar(
            conn,
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND database = "
            "(SELECT oid FROM pg_database WHERE datname = current_database())",
        )
    )


def sqlalchemy_url(dsn: str, driver: str) -> Any:
    """A SQLAlchemy URL for *dsn* with the dialect of *driver* (psycopg,
    psycopg2, pg8000, asyncpg)."""
    import sqlalchemy as sa

    from que_core.dsn import parse_dsn

    params = parse_dsn(dsn)
    query: dict[str, str] = {}
    host = params.pop("host", None)
    sock = params.pop("unix_sock", None)
    if sock is not None:  # the embedded server: a Unix socket
        if driver == "pg8000":
            query["unix_sock"] = str(sock)
        else:
            query["host"] = str(sock).rsplit("/", 1)[0]
    return sa.engine.URL.create(
        f"postgresql+{driver}",
        username=str(params.pop("user")) if "user" in params else None,
        password=str(params.pop("password")) if "password" in params else None,
        host=str(host) if host else None,
        port=int(params.pop("port")) if "port" in params else None,
        database=str(params.pop("dbname")) if "dbname" in params else None,
        query=query,
    )
