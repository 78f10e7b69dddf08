"""Finds adapters through pluggy and the ``que.adapters`` entry point group.

An adapter object has a sync side (:class:`~que_core.connection.Adapter`),
an async side (:class:`~que_core.connection.AsyncAdapter`), or both; each
lookup here asks for the side it needs and names what is missing.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import pluggy

from que_core import hookspecs
from que_core.connection import Adapter, AsyncAdapter, AsyncConnection, Connection
from que_core.errors import ConfigurationError

A = TypeVar("A")  # a side: Adapter or AsyncAdapter
C = TypeVar("C")  # its connections: Connection or AsyncConnection

ADAPTER_GROUP = "que.adapters"
PLUGIN_GROUP = "que.plugins"

_lock = threading.Lock()
_manager: pluggy.PluginManager | None = None


def plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager, loading entry points on first use."""
    global _manager
    if _manager is not None:  # the per-job path asks often: no lock once made
        return _manager
    with _lock:
        if _manager is None:
            pm = pluggy.PluginManager(hookspecs.PROJECT)
            pm.add_hookspecs(hookspecs)
            pm.load_setuptools_entrypoints(ADAPTER_GROUP)
            pm.load_setuptools_entrypoints(PLUGIN_GROUP)
            _manager = pm
        return _manager


def hooks() -> Any:
    """The hook caller: ``hooks().que_job_started(job=...)``."""
    return plugin_manager().hook


def installed_adapters() -> dict[str, Adapter | AsyncAdapter]:
    """Every installed adapter, by name, whichever sides it has."""
    found: dict[str, Adapter | AsyncAdapter] = {}
    for adapter in plugin_manager().hook.que_adapter():
        found[adapter.name] = adapter
    return found


def adapters() -> dict[str, Adapter]:
    """Every installed adapter that has a sync side, by name."""
    return {n: a for n, a in installed_adapters().items() if isinstance(a, Adapter)}


def async_adapters() -> dict[str, AsyncAdapter]:
    """Every installed adapter that has an async side, by name."""
    return {n: a for n, a in installed_adapters().items() if isinstance(a, AsyncAdapter)}


def _installed() -> str:
    return ", ".join(sorted(installed_adapters())) or "none"


def _sides(adapter: object) -> str:
    if isinstance(adapter, Adapter):
        return "sync and async" if isinstance(adapter, AsyncAdapter) else "sync only"
    return "async only" if isinstance(adapter, AsyncAdapter) else "neither side"


def get_adapter(name: str | None = None) -> Adapter:
    """The sync side of the adapter called *name*; with no name, the only
    installed one that has a sync side, or ``psycopg``."""
    return _pick(name, adapters(), ("psycopg", "psycopg2", "pg8000"), "sync", "connect, wrap")


def get_async_adapter(name: str | None = None) -> AsyncAdapter:
    """The async side of the adapter called *name*; with no name, the only
    installed one that has an async side, or ``psycopg``."""
    return _pick(name, async_adapters(), ("psycopg", "asyncpg"), "async", "aconnect, awrap")


def _pick(
    name: str | None, available: dict[str, A], preferred: tuple[str, ...], side: str, api: str
) -> A:
    if name is None:
        if len(available) == 1:
            return next(iter(available.values()))
        for candidate in preferred:
            if candidate in available:
                return available[candidate]
        if available:  # several, none of them preferred
            return available[sorted(available)[0]]
        others = f" (installed adapters: {_installed()})" if installed_adapters() else ""
        raise ConfigurationError(
            f"no installed que-core adapter has a {side} side{others}; install one, e.g. "
            "`pip install ./que_adapters/psycopg`"
        )
    if name in available:
        return available[name]
    present = installed_adapters().get(name)
    if present is not None:
        raise ConfigurationError(
            f"adapter {name!r} has no {side} side (it is {_sides(present)}: it does not "
            f"implement {api}); installed adapters: {_installed()}"
        )
    raise ConfigurationError(
        f"adapter {name!r} is not installed (installed adapters: {_installed()})"
    )


@dataclass
class _Wrapping(Generic[A, C]):
    """How one side finds the adapter for a caller's connection, remembering
    which adapter took each type: an enqueue per job must not ask every
    plugin each time, and a Protocol isinstance() check is slow."""

    connection: type[Any]  # Connection or AsyncConnection
    side: Callable[[], dict[str, A]]
    wrap: Callable[[A, Any], C | None]
    wrappers: dict[type, A] = field(default_factory=dict)
    wrapped_types: set[type] = field(default_factory=set)  # que-core connections already

    def find(self, raw: Any) -> C | None:
        """A connection for *raw* from an adapter of this side, else None."""
        kind = type(raw)
        if kind in self.wrapped_types:
            return raw  # type: ignore[no-any-return]
        adapter = self.wrappers.get(kind)
        if adapter is not None:
            cached = self.wrap(adapter, raw)
            if cached is not None:
                return cached
        if isinstance(raw, self.connection):
            self.wrapped_types.add(kind)
            return raw  # type: ignore[no-any-return]
        for candidate in self.side().values():
            found = self.wrap(candidate, raw)
            if found is not None:
                self.wrappers[kind] = candidate
                return found
        return None


_SYNC: _Wrapping[Adapter, Connection] = _Wrapping(Connection, adapters, lambda a, r: a.wrap(r))
_ASYNC: _Wrapping[AsyncAdapter, AsyncConnection] = _Wrapping(
    AsyncConnection, async_adapters, lambda a, r: a.awrap(r)
)


def wrap_connection(raw: Any) -> Connection:
    """A :class:`Connection` for the caller's raw driver connection."""
    found = _SYNC.find(raw)
    if found is None:
        found = plugin_manager().hook.que_wrap_connection(raw=raw)
        if found is None:
            raise _nobody_wraps(raw, "enqueue", _async_accepts(raw), "aenqueue")
    return found


async def awrap_connection(raw: Any) -> AsyncConnection:
    """An :class:`AsyncConnection` for the caller's raw async driver connection
    (or framework session: a plugin's ``que_awrap_connection``)."""
    found = _ASYNC.find(raw)
    if found is None:
        wrapped = plugin_manager().hook.que_awrap_connection(raw=raw)
        found = await wrapped if inspect.isawaitable(wrapped) else wrapped
        if found is None:
            raise _nobody_wraps(raw, "aenqueue", _SYNC.find(raw) is not None, "enqueue")
    return found


def _async_accepts(raw: Any) -> bool:
    """Whether the async side would take *raw* (for wrap_connection's error)."""
    if _ASYNC.find(raw) is not None:
        return True
    try:
        wrapped = plugin_manager().hook.que_awrap_connection(raw=raw)
    except ConfigurationError:  # a framework object it refuses (an AsyncEngine)
        return True
    if inspect.iscoroutine(wrapped):
        wrapped.close()  # only asked, never awaited
    return wrapped is not None


def _nobody_wraps(raw: Any, side: str, other_side: bool, instead: str) -> ConfigurationError:
    kind = f"{type(raw).__module__}.{type(raw).__qualname__}"
    if other_side:
        which = "an async" if instead == "aenqueue" else "a sync"
        return ConfigurationError(
            f"{kind} is {which} connection, which {side} does not take: use {instead} "
            f"(installed adapters: {_installed()})"
        )
    return ConfigurationError(
        f"no installed adapter accepts a connection of type {kind} "
        f"(installed adapters: {_installed()})"
    )
