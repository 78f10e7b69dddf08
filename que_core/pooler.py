"""A worker's start-up check: does its DSN lead to a transaction pooler?

A worker keeps state in its sessions between transactions: the locker's
advisory locks, the listener's LISTEN. Behind a pooler in transaction mode
(pgbouncer's ``pool_mode = transaction``, the pooled connection string many
hosted PostgreSQL services hand out) each transaction may run in another
server session, so none of that lasts; the worker would lose its locks and
stop with errors that never name the cause. :func:`check_sessions_last`
tells such a pooler apart from a direct connection or a session pool, and
the worker refuses to start. Enqueueing needs no session state: an
application may enqueue through the pooler.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

from que_core.connection import Connection
from que_core.errors import ConfigurationError
from que_core.sql import q

ROUNDS = 3
_probes = itertools.count()


def _pid(conn: Connection) -> int:
    # A new statement text each time: a driver that prepares statements it
    # sees repeatedly (psycopg, from the 5th) would fail behind the pooler.
    return int(conn.execute(f"{q('backend_pid_probe')}_{next(_probes)}")[0][0])


def _evidence(conn: Connection, connect: Callable[[], Connection]) -> str | None:
    """What proves that *conn*'s server session does not last, if this round
    found anything.

    *conn* runs two statements; a second client connection then opens a
    transaction and holds it while *conn* runs another. With a direct
    connection or a session pool, *conn* keeps its server session and no
    other client ever shares it. A transaction pooler may give *conn*'s next
    transaction another idle server session (pgbouncer with
    ``server_round_robin``), or hand *conn*'s idle one to the other client
    (pgbouncer by default reuses the one freed last), or give *conn* another
    one while that is busy.
    """
    first = _pid(conn)
    second = _pid(conn)
    if second != first:
        return (f"one connection's transactions ran in different server sessions "
                f"(backend pids {first} and {second})")
    other = connect()
    try:
        with other.transaction():
            if _pid(other) == first:
                return (f"another connection's transaction ran in this connection's server "
                        f"session (backend pid {first})")
            again = _pid(conn)
    finally:
        other.close()
    if again != first:
        return (f"one connection's transactions ran in different server sessions "
                f"(backend pids {first} and {again})")
    return None


def check_sessions_last(conn: Connection, connect: Callable[[], Connection], where: str) -> None:
    """Raise :class:`~que_core.errors.ConfigurationError` when *conn* (opened by
    *connect*, to *where*: a masked DSN) goes through a transaction pooler."""
    for _ in range(ROUNDS):
        evidence = _evidence(conn, connect)
        if evidence:
            raise ConfigurationError(
                f"the worker's database {where} is behind a connection pooler in transaction "
                f"mode (such as pgbouncer with pool_mode = transaction, or the pooled "
                f"connection string of a hosted PostgreSQL): {evidence}, so the advisory "
                f"locks and LISTEN a worker keeps in its sessions would not last. Give the "
                f"worker a direct connection string, or one through a pool in session mode "
                f"(pool_mode = session); your application can keep enqueueing through the "
                f"transaction pooler."
            )
