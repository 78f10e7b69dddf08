"""que-core adapter for pg8000 (pure Python).

``connect`` opens a :class:`pg8000.native.Connection`; ``wrap`` accepts any
pg8000 connection (``pg8000.native``, ``pg8000.dbapi`` and the legacy
``pg8000.connect``). pg8000 reads notifications only while it reads the
answer to a query: ``notifications(timeout)`` waits for the socket to become
readable, then sends an empty query to read them.
"""

from __future__ import annotations

import getpass
import io
import math
import re
import select
import ssl
from collections import deque
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager, suppress
from functools import partial
from itertools import count
from typing import Any

import pg8000.core
import pg8000.exceptions
import pg8000.native

from que_core import copying, errors
from que_core.connection import Notification, Row
from que_core.dsn import cannot_connect, parse_dsn
from que_core.hookspecs import adapter_hook, wrapper
from que_core.transactions import Transactions, TransactionStatus

_ERRORS = (pg8000.exceptions.Error, OSError)
_PLACEHOLDER = re.compile(r"%[s%]")
_IN_TRANSACTION, _FAILED = b"T", b"E"  # ReadyForQuery transaction status
_STATUS: dict[bytes | None, TransactionStatus] = {
    _IN_TRANSACTION: TransactionStatus.IN_TRANSACTION,
    _FAILED: TransactionStatus.FAILED,
}


def _message(exc: BaseException) -> str:
    if exc.args and isinstance(exc.args[0], dict):  # a server error's fields
        fields = exc.args[0]
        detail = fields.get("D")
        return str(fields.get("M", "")) + (f"\nDETAIL: {detail}" if detail else "")
    cause = f" ({exc.__cause__})" if exc.__cause__ else ""
    return (str(exc) or type(exc).__name__) + cause


def _sql(sql: str) -> str:
    """``%s`` placeholders as ``$1``, ``$2``, ... (``%%`` as ``%``)."""
    n = count(1)
    return _PLACEHOLDER.sub(lambda m: "%" if m[0] == "%%" else f"${next(n)}", sql)


def _param(value: Any) -> Any:
    # pg8000 writes the text "null" in an array unquoted, which PostgreSQL
    # reads as NULL: send arrays as literals with every element quoted.
    if isinstance(value, list):
        items = (
            "NULL" if v is None else _param(v) if isinstance(v, list) else _quote(str(v))
            for v in value
        )
        return "{" + ",".join(items) + "}"
    return value


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _on_notification(raw: Any, data: bytes, context: Any) -> None:
    # pg8000 decodes payloads as ASCII (a non-ASCII payload breaks the session).
    encoding = getattr(raw, "_client_encoding", "utf-8")
    channel, payload = data[4:].split(b"\0")[:2]
    pid = int.from_bytes(data[:4], "big", signed=True)
    raw.notifications.append((pid, channel.decode(encoding), payload.decode(encoding)))


class Pg8000Connection:
    """A que-core Connection over a pg8000 connection."""

    def __init__(self, raw: Any, owned: bool) -> None:
        self.raw = raw
        self._owned = owned
        self._lost = False
        self._transactions = Transactions(self._run, self._transaction_status)
        if owned:  # our session: keep every notification, decode them right
            raw.notifications = deque()
            raw.message_types[pg8000.core.NOTIFICATION_RESPONSE] = partial(_on_notification, raw)

    def _status(self) -> bytes | None:
        status: bytes | None = getattr(self.raw, "_transaction_status", None)
        return status

    def _transaction_status(self) -> TransactionStatus:
        return _STATUS.get(self._status(), TransactionStatus.IDLE)

    def _run(self, sql: str, params: Sequence[Any] = (), stream: Any = None) -> Any:
        if self.closed:
            raise errors.ConnectionLost("the connection is closed")
        try:
            if params or stream is not None:
                return self.raw.execute_unnamed(_sql(sql), vals=[_param(p) for p in params],
                                                stream=stream)
            return self.raw.execute_simple(sql)
        except _ERRORS as exc:
            if exc.args and isinstance(exc.args[0], dict):
                error = errors.from_sqlstate(exc.args[0].get("C"), _message(exc))
            elif str(exc) == "in failed transaction block":  # COMMIT of a failed one
                error = errors.DatabaseError(_message(exc), "25P02")
            else:  # network error, closed connection
                error = errors.ConnectionLost(_message(exc))
            self._lost = self._lost or isinstance(error, errors.ConnectionLost)
            raise error from exc

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        if getattr(self.raw, "autocommit", True) is False and self._status() not in (
            _IN_TRANSACTION,
            _FAILED,
        ):
            self._run("BEGIN")  # what a pg8000.dbapi cursor does on a non-autocommit connection
        context = self._run(sql, params)
        return [tuple(row) for row in context.rows] if context.rows is not None else []

    def transaction(self) -> AbstractContextManager[None]:
        return self._transactions.transaction()

    def notifications(self, timeout: float) -> list[Notification]:
        # A round trip that runs nothing makes the driver read what has
        # arrived (its buffer may hold some already); then wait on the socket.
        self._run("")
        queued = self.raw.notifications
        if not queued and timeout > 0:
            sock = getattr(self.raw, "_usock", None)
            try:
                readable = sock is not None and select.select([sock], [], [], timeout)[0]
            except (OSError, ValueError) as exc:
                self._lost = True
                raise errors.ConnectionLost(_message(exc)) from exc
            if readable:
                self._run("")
        got = []
        while queued:
            pid, channel, payload = queued.popleft()
            got.append(Notification(channel, payload, pid))
        return got

    def copy_in(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        if getattr(self.raw, "autocommit", True) is False and self._status() not in (
            _IN_TRANSACTION,
            _FAILED,
        ):
            self._run("BEGIN")
        self._run(sql, stream=io.StringIO(copying.text(rows)))

    def reset(self) -> bool:
        autocommit = getattr(self.raw, "autocommit", True)
        if autocommit is not False and self._status() not in (_IN_TRANSACTION, _FAILED):
            return False
        if self._status() in (_IN_TRANSACTION, _FAILED):
            self._run("ROLLBACK")
        if autocommit is False:
            self.raw.autocommit = True
        return True

    def close(self) -> None:
        if self._owned and getattr(self.raw, "_usock", None) is not None:
            with suppress(*_ERRORS):
                self.raw.close()

    @property
    def closed(self) -> bool:
        return self._lost or getattr(self.raw, "_usock", None) is None


_SSLMODES: dict[str, Any] = {"disable": False, "allow": None, "prefer": None, "require": True}
_STARTUP = ("options", "client_encoding")


def _timeout(value: Any) -> float | None:
    try:
        seconds = float(value)
        if math.isnan(seconds) or math.isinf(seconds):
            raise ValueError(value)
    except ValueError:
        raise errors.ConfigurationError(
            f"connect_timeout {value!r} in the DSN is not a number of seconds"
        ) from None
    return seconds if seconds > 0 else None


def connect_args(dsn: str) -> dict[str, Any]:
    """pg8000's keyword arguments for *dsn* (libpq URL or key=value form)."""
    params = parse_dsn(dsn)
    kwargs: dict[str, Any] = {"user": getpass.getuser()}
    startup = {key: str(params.pop(key)) for key in _STARTUP if key in params}
    if startup:
        kwargs["startup_params"] = startup
    sslmode = str(params.pop("sslmode", "prefer"))
    rootcert = params.pop("sslrootcert", None)
    if sslmode in _SSLMODES:
        kwargs["ssl_context"] = _SSLMODES[sslmode]
    elif sslmode in ("verify-ca", "verify-full"):
        try:
            context = ssl.create_default_context(cafile=str(rootcert) if rootcert else None)
        except (OSError, ssl.SSLError) as exc:
            raise errors.ConfigurationError(
                f"cannot use sslrootcert {rootcert!r}: {exc.strerror or exc}"
            ) from None
        context.check_hostname = sslmode == "verify-full"
        kwargs["ssl_context"] = context
    else:
        raise errors.ConfigurationError(f"unknown sslmode {sslmode!r}")
    for key, value in params.items():
        if key in ("host", "port", "user", "password", "unix_sock", "application_name"):
            kwargs[key] = value
        elif key == "dbname":
            kwargs["database"] = value
        elif key == "connect_timeout":
            kwargs["timeout"] = _timeout(value)
        else:
            raise errors.ConfigurationError(f"the pg8000 adapter does not support {key!r} in a DSN")
    return kwargs


#: Notifications kept between two reads on a session this adapter opened.
NOTIFICATION_BACKLOG = 100_000


class Pg8000Adapter:
    name = "pg8000"

    def connect(self, dsn: str) -> Pg8000Connection:
        kwargs = connect_args(dsn)
        try:
            raw = pg8000.native.Connection(**kwargs)
            if kwargs.get("timeout"):  # pg8000 keeps it for every read: it was for connecting
                raw._usock.settimeout(None)
            # pg8000 keeps the last 100 notifications between reads and drops
            # older ones: a burst of junk would push out the jobs' own.
            raw.notifications = deque(maxlen=NOTIFICATION_BACKLOG)
        except _ERRORS as exc:
            raise cannot_connect(dsn, _message(exc)) from None
        return Pg8000Connection(raw, owned=True)

    wrap = wrapper(pg8000.core.CoreConnection, Pg8000Connection)


ADAPTER = Pg8000Adapter()
que_adapter = adapter_hook(ADAPTER)

