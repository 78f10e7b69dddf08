"""Hook specifications: the only way plugins talk to que-core.

Plugins are found through entry points, never a registry edited by hand:

* group ``que.adapters``: database adapters. The entry point name is the
  adapter's name (``psycopg``, ``psycopg2``, ``pg8000``, ...) and its value
  a module implementing :func:`que_adapter` and :func:`que_wrap_connection`.

Implement a hook with ``@que_core.hookimpl`` on a module-level function of
the same name.
"""

from __future__ import annotations

from typing import Any

import pluggy

from que_core.connection import Adapter, Connection

PROJECT = "que"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def que_adapter() -> Adapter:  # type: ignore[empty-body]
    """Return the :class:`~que_core.connection.Adapter` this plugin provides."""


@hookspec(firstresult=True)
def que_wrap_connection(raw: Any) -> Connection | None:
    """Wrap *raw* if it is a connection of this plugin's driver, else return None.

    Called to find the adapter for a connection passed as ``enqueue(conn=...)``;
    decide by the connection's type, cheaply, without touching the server.
    """
