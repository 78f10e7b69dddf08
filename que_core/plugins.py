"""Finds adapters through pluggy and the ``que.adapters`` entry point group."""

from __future__ import annotations

import threading
from typing import Any

import pluggy

from que_core import hookspecs
from que_core.connection import Adapter, Connection
from que_core.errors import ConfigurationError

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


def adapters() -> dict[str, Adapter]:
    """Every installed adapter, by name."""
    found: dict[str, Adapter] = {}
    for adapter in plugin_manager().hook.que_adapter():
        found[adapter.name] = adapter
    return found


def get_adapter(name: str | None = None) -> Adapter:
    """The adapter called *name*; with no name, the only one or ``psycopg``."""
    available = adapters()
    if name is None:
        if len(available) == 1:
            return next(iter(available.values()))
        for preferred in ("psycopg", "psycopg2", "pg8000"):
            if preferred in available:
                return available[preferred]
        raise ConfigurationError(
            "no que-core adapter is installed; install one, e.g. "
            "`pip install ./que_adapters/psycopg`"
        )
    try:
        return available[name]
    except KeyError:
        installed = ", ".join(sorted(available)) or "none"
        raise ConfigurationError(
            f"adapter {name!r} is not installed (installed adapters: {installed})"
        ) from None


#: Driver connection types an adapter's wrap accepted, and that adapter: an
#: enqueue per job must not ask every plugin each time.
_wrappers: dict[type, Adapter] = {}
#: Types known to be que-core Connections already (a Protocol isinstance()
#: check is slow).
_wrapped_types: set[type] = set()


def wrap_connection(raw: Any) -> Connection:
    """A :class:`Connection` for the caller's raw driver connection."""
    kind = type(raw)
    if kind in _wrapped_types:
        return raw  # type: ignore[no-any-return]
    adapter = _wrappers.get(kind)
    if adapter is not None:
        cached = adapter.wrap(raw)
        if cached is not None:
            return cached
    if isinstance(raw, Connection):
        _wrapped_types.add(kind)
        return raw
    for candidate in adapters().values():
        found = candidate.wrap(raw)
        if found is not None:
            _wrappers[kind] = candidate
            return found
    wrapped: Connection | None = plugin_manager().hook.que_wrap_connection(raw=raw)
    if wrapped is None:
        installed = ", ".join(sorted(adapters())) or "none"
        raise ConfigurationError(
            f"no installed adapter accepts a connection of type "
            f"{type(raw).__module__}.{type(raw).__qualname__} "
            f"(installed adapters: {installed})"
        )
    return wrapped
