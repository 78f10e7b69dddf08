"""que-core adapter for asyncpg: an async side only.

``aconnect`` opens an ``asyncpg.Connection``; ``awrap`` accepts one, or a
connection acquired from an ``asyncpg`` pool. asyncpg has no blocking API, so
the adapter has no sync side (no ``connect``/``wrap``): que-core's lookups of a
sync adapter (``que work``, ``enqueue``) say so, and the conformance suite
counts the sync tests as declared unsupported.

What asyncpg does its own way, and what the adapter does about it:

* **Placeholders**: ``%s`` becomes ``$1``, ``$2``, ... (``%%`` becomes ``%``).
* **Types**: asyncpg picks a codec from each parameter's type in the prepared
  statement. JSON travels as text, so ``%s::jsonb`` is sent as
  ``$n::text::jsonb``: a codec the application set for ``jsonb`` (a common
  ``set_type_codec('jsonb', encoder=json.dumps, ...)``) never encodes que-core's
  text a second time. Timestamps and arrays need nothing: its codecs take and
  give aware datetimes and lists.
* **Statements** run prepared (``fetch``), through the connection's own
  statement cache, so a wrapped connection keeps the application's
  ``statement_cache_size`` (0 behind a transaction pooler). A script of
  several statements without parameters (migrations) runs by the simple
  protocol (``execute``) and returns no rows.
* **Transactions** are SQL (:class:`~que_core.transactions.AsyncTransactions`),
  not asyncpg's ``Transaction`` objects, which refuse to start inside a
  transaction begun by a statement. asyncpg does not expose whether a
  transaction failed; the server's answer to COMMIT does (``ROLLBACK``), and a
  block whose body swallowed an error raises SQLSTATE 25P02 from that.
* **Notifications** reach only channels registered with ``add_listener``: a
  ``LISTEN name`` (``UNLISTEN name``, ``UNLISTEN *``) statement given to
  ``execute`` becomes that call, and ``notifications()`` returns what the
  listener collected.
* **COPY** goes through ``copy_to_table``, which writes the statement itself:
  ``copy_in`` takes ``COPY table (columns) FROM STDIN``, the form the core
  sends, and sends the rows in the text format (:mod:`que_core.copying`), so
  no codec of the application's sees them.
"""

from __future__ import annotations

import asyncio
import io
import re
import ssl
from collections import deque
from collections.abc import Iterable, Sequence
from contextlib import AbstractAsyncContextManager, suppress
from functools import lru_cache
from itertools import count
from typing import Any

import asyncpg

from que_core import copying, errors
from que_core.connection import Notification, Row
from que_core.dsn import cannot_connect, parse_dsn
from que_core.hookspecs import adapter_hook, wrapper
from que_core.transactions import AsyncTransactions, TransactionStatus, aborted

# A placeholder, with the JSON cast after it if there is one.
_PLACEHOLDER = re.compile(r"%%|%s(::jsonb?\b)?")
# What can hold a ";" that does not end a statement, and the ";" that does.
_TOKENS = re.compile(
    r"""[Ee]'(?:[^'\\]|\\.|'')*'
      | '(?:[^']|'')*'
      | "(?:[^"]|"")*"
      | --[^\n]*
      | /\*.*?\*/
      | \$(?P<tag>(?:[A-Za-z_][A-Za-z0-9_]*)?)\$.*?\$(?P=tag)\$
      | ;""",
    re.S | re.X,
)
_LISTEN = re.compile(
    r'\s*(UN)?LISTEN\s+("(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*|\*)\s*;?\s*', re.I
)
_COPY = re.compile(
    r"\s*COPY\s+(?:([A-Za-z_]\w*)\.)?([A-Za-z_]\w*)\s*\(([\w\s,]+)\)\s+FROM\s+STDIN\s*;?\s*", re.I
)
_GONE = (OSError, asyncio.TimeoutError, asyncpg.exceptions.ConnectionDoesNotExistError)
_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError, *_GONE)


@lru_cache(maxsize=512)
def _sql(sql: str) -> str:
    """*sql* with ``$n`` placeholders, and JSON parameters sent as text."""
    n = count(1)

    def placeholder(m: re.Match[str]) -> str:
        if m[0] == "%%":
            return "%"
        return f"${next(n)}" + (f"::text{m[1]}" if m[1] else "")

    return _PLACEHOLDER.sub(placeholder, sql)


@lru_cache(maxsize=512)
def _several(sql: str) -> bool:
    """Whether *sql* holds more than one statement (semicolons in strings,
    quoted names, comments and dollar quotes do not count)."""
    if ";" not in sql:
        return False
    statements, code, pos = 0, False, 0
    for m in _TOKENS.finditer(sql):
        code = code or bool(sql[pos : m.start()].strip())
        pos = m.end()
        if m[0] == ";":
            statements, code = statements + code, False
        elif not m[0].startswith(("--", "/*")):
            code = True
    return statements + (code or bool(sql[pos:].strip())) > 1


def _identifier(text: str) -> str:
    if text.startswith('"'):
        return text[1:-1].replace('""', '"')
    return text.lower()  # PostgreSQL folds unquoted names


def _message(exc: BaseException) -> str:
    detail = getattr(exc, "detail", None)
    text = str(exc) or type(exc).__name__
    return text + (f"\nDETAIL: {detail}" if detail else "")


class AsyncpgConnection:
    """A que-core AsyncConnection over an asyncpg connection (or a pool's)."""

    def __init__(self, raw: Any, owned: bool) -> None:
        self.raw = raw
        self._owned = owned
        self._lost = False
        # Made when first needed: a wrapper is made per aenqueue.
        self._transactions: AsyncTransactions | None = None
        self._queue: deque[Notification] = deque()
        self._arrived: asyncio.Event | None = None
        self._channels: set[str] = set()
        self._watching = False  # for the session's end, once something LISTENs

    def _translate(self, exc: BaseException) -> errors.DatabaseError:
        if isinstance(exc, asyncpg.PostgresError):
            error = errors.from_sqlstate(exc.sqlstate, _message(exc))
        elif isinstance(exc, (*_GONE, asyncpg.InternalClientError)) or self.closed:
            # InternalClientError: asyncpg's protocol is in a state it cannot
            # leave (seen when a terminated session's last message races a
            # statement); the session is no use any more.
            error = errors.ConnectionLost(_message(exc))
        else:  # misuse the driver refused (InterfaceError, DataError, ...)
            error = errors.DatabaseError(_message(exc))
        self._lost = self._lost or isinstance(error, errors.ConnectionLost)
        return error

    def _status(self) -> TransactionStatus:
        in_transaction = self.raw.is_in_transaction()
        return TransactionStatus.IN_TRANSACTION if in_transaction else TransactionStatus.IDLE

    async def _control(self, sql: str) -> None:
        """Run a transaction-control statement by the simple protocol."""
        try:
            tag = await self.raw.execute(sql)
        except _ERRORS as exc:
            raise self._translate(exc) from exc
        if sql == "COMMIT" and tag == "ROLLBACK":  # the transaction had failed
            raise aborted()

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        if self.closed:
            raise errors.ConnectionLost("the connection is closed")
        try:
            if params:
                return [tuple(r) for r in await self.raw.fetch(_sql(sql), *params)]
            listen = _LISTEN.fullmatch(sql)
            if listen:
                await self._listen(bool(listen[1]), listen[2])
                return []
            if _several(sql):
                await self.raw.execute(sql)
                return []
            return [tuple(r) for r in await self.raw.fetch(sql)]
        except _ERRORS as exc:
            raise self._translate(exc) from exc

    async def copy_in(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        if self.closed:
            raise errors.ConnectionLost("the connection is closed")
        copy = _COPY.fullmatch(sql)
        if copy is None:
            raise errors.DatabaseError(
                f"the asyncpg adapter copies with COPY table (columns) FROM STDIN, not {sql!r}"
            )
        # Unquoted names, folded as PostgreSQL does; copy_to_table quotes them.
        schema = copy[1].lower() if copy[1] else None
        table, columns = copy[2].lower(), [c.strip().lower() for c in copy[3].split(",")]
        try:
            await self.raw.copy_to_table(
                table, schema_name=schema, columns=columns, format="text",
                source=io.BytesIO(copying.text(rows).encode()),  # bytes would be a path
            )  # fmt: skip
        except _ERRORS as exc:
            raise self._translate(exc) from exc

    async def _listen(self, unlisten: bool, name: str) -> None:
        if not self._watching:
            self._watching = True
            self.raw.add_termination_listener(self._on_termination)
        if not unlisten:
            channel = _identifier(name)
            await self.raw.add_listener(channel, self._on_notification)
            self._channels.add(channel)
            return
        channels = set(self._channels) if name == "*" else {_identifier(name)}
        for channel in channels & self._channels:
            await self.raw.remove_listener(channel, self._on_notification)
            self._channels.discard(channel)
        if name == "*":
            await self.raw.execute("UNLISTEN *")

    def _on_notification(self, conn: Any, pid: int, channel: str, payload: str) -> None:
        self._queue.append(Notification(channel, payload, pid))
        if self._arrived is not None:
            self._arrived.set()

    def _on_termination(self, conn: Any) -> None:
        if self._arrived is not None:
            self._arrived.set()  # wakes a wait, which then finds the session gone

    def atransaction(self) -> AbstractAsyncContextManager[None]:
        if self._transactions is None:
            self._transactions = AsyncTransactions(
                self._control, self._status, closed=lambda: self.closed
            )
        return self._transactions.atransaction()

    async def notifications(self, timeout: float) -> list[Notification]:
        if not self._queue:
            await asyncio.sleep(0)  # asyncpg hands them over with call_soon
        if not self._queue and timeout > 0 and not self.closed:
            if self._arrived is None:  # the first wait
                self._arrived = asyncio.Event()
            self._arrived.clear()
            with suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), timeout)
        if not self._queue and self.closed:
            self._lost = True
            raise errors.ConnectionLost("the connection is closed")
        got = list(self._queue)
        self._queue.clear()
        return got

    async def reset(self) -> bool:
        if not self.raw.is_in_transaction():
            return False
        await self._control("ROLLBACK")
        return True

    async def close(self) -> None:
        if not self._owned or self.raw.is_closed():
            return
        try:
            await self.raw.close()
        except _ERRORS:
            self.raw.terminate()

    @property
    def closed(self) -> bool:
        if self._lost:
            return True
        try:
            return bool(self.raw.is_closed())
        except asyncpg.InterfaceError:  # a pool's connection, released
            return True


_SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


def connect_args(dsn: str) -> dict[str, Any]:
    """asyncpg's keyword arguments for *dsn* (libpq URL or key=value form)."""
    params = parse_dsn(dsn)
    kwargs: dict[str, Any] = {}
    settings: dict[str, str] = {}
    sslmode = str(params.pop("sslmode", "prefer"))
    rootcert = params.pop("sslrootcert", None)
    if sslmode not in _SSLMODES:
        raise errors.ConfigurationError(f"unknown sslmode {sslmode!r}")
    if sslmode in ("verify-ca", "verify-full") and rootcert:
        context = ssl.create_default_context(cafile=str(rootcert))
        context.check_hostname = sslmode == "verify-full"
        kwargs["ssl"] = context
    else:
        kwargs["ssl"] = sslmode
    for key, value in params.items():
        if key in ("host", "port", "user", "password"):
            kwargs[key] = value
        elif key == "unix_sock":  # <dir>/.s.PGSQL.<port>
            directory, _, name = str(value).rpartition("/")
            kwargs["host"], kwargs["port"] = directory, int(name.rpartition(".")[2])
        elif key == "dbname":
            kwargs["database"] = value
        elif key == "connect_timeout":
            if float(value) > 0:
                kwargs["timeout"] = float(value)
        elif key == "application_name":
            settings[key] = str(value)
        elif key == "options":
            settings.update(_options(str(value)))
        else:
            raise errors.ConfigurationError(
                f"the asyncpg adapter does not support {key!r} in a DSN"
            )
    if settings:
        kwargs["server_settings"] = settings
    return kwargs


def _options(options: str) -> dict[str, str]:
    """libpq's ``options`` (``-c name=value ...``) as asyncpg's server_settings."""
    words = options.replace("-c ", "-c").split()
    found: dict[str, str] = {}
    for word in words:
        name, eq, value = word.removeprefix("-c").partition("=")
        if not word.startswith("-c") or not eq or not name:
            raise errors.ConfigurationError(
                f"the asyncpg adapter reads only -c name=value in a DSN's options, not {word!r}"
            )
        found[name] = value
    return found


class AsyncpgAdapter:
    name = "asyncpg"

    async def aconnect(self, dsn: str) -> AsyncpgConnection:
        kwargs = connect_args(dsn)
        try:
            raw = await asyncpg.connect(**kwargs)
        except _ERRORS as exc:
            raise cannot_connect(dsn, _message(exc)) from None
        return AsyncpgConnection(raw, owned=True)

    # A pool's PoolConnectionProxy passes too (asyncpg's isinstance says so).
    awrap = wrapper(asyncpg.Connection, AsyncpgConnection)


ADAPTER = AsyncpgAdapter()
que_adapter = adapter_hook(ADAPTER)
