"""The dashboard's database sessions: a few kept open between requests.

Requests run in Starlette's thread pool, each borrowing one session (in
autocommit mode, as adapters open them); one that broke is closed, not
returned.
"""

from __future__ import annotations

import queue
from collections.abc import Iterator
from contextlib import contextmanager

from que_core.connection import Adapter, Connection
from que_core.sql import q


class Pool:
    def __init__(self, adapter: Adapter, dsn: str, keep: int = 4) -> None:
        self.adapter = adapter
        self._dsn = dsn
        self._idle: queue.LifoQueue[Connection] = queue.LifoQueue(maxsize=keep)

    @contextmanager
    def connection(self) -> Iterator[Connection]:
        try:
            conn = self._idle.get_nowait()
        except queue.Empty:
            conn = self.adapter.connect(self._dsn)
            try:
                conn.execute(q("web_session"))
            except BaseException:
                conn.close()
                raise
        ok = False
        try:
            yield conn
            ok = True
        finally:
            if ok and not conn.closed:
                try:
                    self._idle.put_nowait(conn)
                except queue.Full:
                    conn.close()
            else:
                conn.close()

    def close(self) -> None:
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return
