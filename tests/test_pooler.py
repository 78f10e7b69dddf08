"""A worker behind a transaction pooler refuses to start and says why; through
a session pool it works; enqueueing through either works. With a real
pgbouncer (Debian's package: ``apt-get install -y pgbouncer``; ``.ci/run``
installs it), started here on a free port in front of the test server."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conformance.fixtures import free_port, wait_until
from conformance.jobs import LOG_TABLE, SelfResolving
from que_core import Worker
from que_core.connection import Adapter, Connection
from que_core.dsn import parse_dsn
from que_core.errors import ConfigurationError
from tests.helpers import job_count, log_tags
from tests.test_cli_admin import que

PGBOUNCER = shutil.which("pgbouncer") or next(
    (p for p in ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer") if os.access(p, os.X_OK)), None)

pytestmark = [pytest.mark.per_adapter, pytest.mark.skipif(  # per adapter: each driver's
    PGBOUNCER is None,                                     # prepared statements meet it
    reason="pgbouncer is not installed (apt-get install -y pgbouncer; .ci/run installs it)",
)]


class Pgbouncer:
    """A pgbouncer in front of the test server, in one pool mode, for any database."""

    def __init__(self, server_dsn: str, mode: str, *settings: str) -> None:
        params = parse_dsn(server_dsn)
        if "unix_sock" in params:  # the embedded server: its socket directory
            host = str(params["unix_sock"]).rsplit("/", 1)[0]
        else:
            host = str(params.get("host", "127.0.0.1"))
        self.user = str(params.get("user", "postgres"))
        password = str(params.get("password", ""))
        self.dir = Path(tempfile.mkdtemp(prefix=f"que-pgbouncer-{mode}-"))
        self.port = free_port()
        (self.dir / "userlist.txt").write_text(f'"{self.user}" "{password}"\n')
        (self.dir / "pgbouncer.ini").write_text(
            "[databases]\n"
            f"* = host={host} port={params.get('port', 5432)}\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {self.port}\nunix_socket_dir =\n"
            f"auth_type = trust\nauth_file = {self.dir / 'userlist.txt'}\n"
            f"pool_mode = {mode}\ndefault_pool_size = 4\nmax_client_conn = 50\n"
            "ignore_startup_parameters = extra_float_digits\n"
            + "".join(f"{line}\n" for line in settings)
        )
        cmd = [str(PGBOUNCER), str(self.dir / "pgbouncer.ini")]
        if os.geteuid() == 0:  # pgbouncer will not run as root
            if "unix_sock" in params:
                pytest.skip("running as root: pgbouncer runs as another user, who cannot reach "
                            "the embedded server's private socket directory (give QUE_TEST_DSN)")
            runas = next((u for u in ("postgres", "nobody") if _user_exists(u)), None)
            if runas is None:
                pytest.skip("running as root, with no user to run pgbouncer as")
            cmd[1:1] = ["-u", runas]
            os.chmod(self.dir, 0o755)
        self.log = open(self.dir / "log", "wb")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while True:
            with contextlib.suppress(OSError), socket.create_connection(
                    ("127.0.0.1", self.port), timeout=1):
                break
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"pgbouncer did not start:\n{self.output()}")
            time.sleep(0.05)

    def dsn(self, dbname: str) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{dbname}"

    def output(self) -> str:
        return (self.dir / "log").read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


@pytest.fixture(scope="module")
def pgbouncers(server_dsn: str) -> Iterator[Callable[..., Pgbouncer]]:
    started: dict[str, Pgbouncer] = {}

    def get(mode: str, *settings: str) -> Pgbouncer:
        key = " ".join([mode, *settings])
        if key not in started:
            started[key] = Pgbouncer(server_dsn, mode, *settings)
        return started[key]

    yield get
    for bouncer in started.values():
        bouncer.stop()


def _dbname(dsn: str) -> str:
    return str(parse_dsn(dsn)["dbname"])


def test_a_worker_behind_a_transaction_pooler_refuses_to_start(
    pgbouncers: Callable[..., Pgbouncer], adapter: Adapter, dsn: str, db: Connection
) -> None:
    bouncer = pgbouncers("transaction")
    pooled = bouncer.dsn(_dbname(dsn))
    with pytest.raises(ConfigurationError) as info:
        Worker(pooled, adapter=adapter).start()
    message = str(info.value)
    assert f"the worker's database {pooled} is behind a connection pooler in transaction mode" \
        in message
    assert "pgbouncer with pool_mode = transaction" in message
    assert "Give the worker a direct connection string" in message
    assert "session mode (pool_mode = session)" in message
    assert "your application can keep enqueueing through the transaction pooler" in message

    # The same from the command line: a configuration error, exit 2, one line.
    out = que("work", "--dsn", pooled, "--adapter", adapter.name, "conformance.jobs")
    assert out.returncode == 2, out.stderr
    assert "is behind a connection pooler in transaction mode" in out.stderr
    assert "Traceback" not in out.stderr

    # What the message promises: the app enqueues through the pooler, one
    # commit at a time, and a worker on a direct connection works the jobs.
    app = adapter.connect(pooled)
    try:
        for i in range(20):
            SelfResolving.enqueue(i, conn=app.raw)
    finally:
        app.close()
    assert job_count(db) == 20
    worker = Worker(dsn, adapter=adapter, poll_interval=0.2).start()
    try:
        wait_until(lambda: job_count(db) == 0, within=30)
    finally:
        worker.stop(timeout=10)
    assert sorted(log_tags(db), key=int) == [str(i) for i in range(20)]


def test_a_round_robin_transaction_pool_is_found_too(
    pgbouncers: Callable[..., Pgbouncer], adapter: Adapter, dsn: str
) -> None:
    bouncer = pgbouncers("transaction", "server_round_robin = 1")
    pooled = bouncer.dsn(_dbname(dsn))
    # Several idle server sessions in the pool, as in a busy application's.
    clients = [adapter.connect(pooled) for _ in range(3)]
    try:
        for c in clients:
            c.execute("BEGIN")
            c.execute("SELECT 1")
        for c in clients:
            c.execute("COMMIT")
    finally:
        for c in clients:
            c.close()
    with pytest.raises(ConfigurationError, match="behind a connection pooler in transaction"):
        Worker(pooled, adapter=adapter).start()


def test_a_worker_through_a_session_pool_works(
    pgbouncers: Callable[..., Pgbouncer], adapter: Adapter, dsn: str, db: Connection
) -> None:
    bouncer = pgbouncers("session")
    pooled = bouncer.dsn(_dbname(dsn))
    db.execute(LOG_TABLE)
    for i in range(5):
        SelfResolving.enqueue(i, conn=db.raw)
    worker = Worker(pooled, adapter=adapter, poll_interval=0.2, worker_count=2).start()
    try:
        wait_until(lambda: job_count(db) == 0, within=30)
    finally:
        assert worker.stop(timeout=10) is True
    assert sorted(log_tags(db), key=int) == [str(i) for i in range(5)]
