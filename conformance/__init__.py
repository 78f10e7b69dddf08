"""The que-core adapter conformance suite.

One set of pytest tests that every adapter must pass, run the same way for
each (like River's ``riverdrivertest``)::

    python -m conformance --adapter NAME [--dsn DSN] [-- PYTEST-ARGS...]

runs it against any installed adapter, found only through the ``que.adapters``
entry point group. The repository's own test run collects the same tests for
every installed adapter through ``tests/test_conformance.py``.

Layout:

* ``test_*.py``: the tests. A new module dropped in here is picked up by both
  runs; test and fixture names must be unique across the modules. Tests ask
  for the host fixtures ``adapter`` (the sync side under test, an
  :class:`~que_core.connection.Adapter`), ``async_adapter`` (the async side,
  an :class:`~que_core.connection.AsyncAdapter`; the ``test_async_*``
  modules) and ``server_dsn`` (a server on which databases can be created),
  and for the fixtures of :mod:`conformance.fixtures`. A host parametrises
  both over the adapter names and gets each side with :func:`sync_side` and
  :func:`async_side`, which declare a side the adapter lacks unsupported.
  Async tests run with pytest-asyncio (``@pytest.mark.asyncio`` each).
* :mod:`conformance.fixtures`: per-test databases and connections, helpers.
* :mod:`conformance.plugin`: the pytest plugin behind ``python -m
  conformance`` (``--adapter``/``--dsn``, the host fixtures, the summary).

A test that needs a capability an adapter declares it lacks calls
:func:`declared_unsupported`; the summary counts those apart from failures
and other skips. An adapter declares a side it lacks by not implementing it
(asyncpg has no ``connect``/``wrap``; pg8000 and psycopg2 no
``aconnect``/``awrap``): every test of that side is declared unsupported.
"""

from __future__ import annotations

# isort: off
from conformance import _requires  # noqa: F401 (first: without pytest, says what to install)

# isort: on
import importlib
import pkgutil
from collections.abc import Callable
from types import ModuleType
from typing import Any, NoReturn, TypeVar

import pytest

from que_core import plugins
from que_core.connection import Adapter, AsyncAdapter
from que_core.errors import ConfigurationError

T = TypeVar("T")

#: The reason prefix of a skip for a capability the adapter declares it lacks.
DECLARED_UNSUPPORTED = "declared unsupported"


def declared_unsupported(what: str) -> NoReturn:
    """Skip this test: the adapter declares it does not support *what*."""
    pytest.skip(f"{DECLARED_UNSUPPORTED}: {what}")


def sync_side(name: str) -> Adapter:
    """The sync side of the installed adapter *name*, or this test is
    declared unsupported when the adapter has none."""
    return _side(name, plugins.get_adapter, "the sync side (Adapter: connect, wrap)")


def async_side(name: str) -> AsyncAdapter:
    """The async side of the installed adapter *name*, or this test is
    declared unsupported when the adapter has none."""
    return _side(name, plugins.get_async_adapter, "the async side (AsyncAdapter: aconnect, awrap)")


def _side(name: str, get: Callable[[str], T], what: str) -> T:
    try:
        return get(name)
    except ConfigurationError:
        if name not in plugins.installed_adapters():
            raise
    declared_unsupported(what)


def suite_modules() -> list[ModuleType]:
    """Every ``conformance.test_*`` module, imported."""
    return [
        importlib.import_module(f"{__name__}.{info.name}")
        for info in pkgutil.iter_modules(__path__)
        if info.name.startswith("test_")
    ]


def suite_namespace() -> dict[str, Any]:
    """The suite's tests and fixtures, to put into a host test module's globals.

    A host module provides the fixtures ``adapter`` and ``server_dsn`` (or
    gets them from its conftest) and does ``globals().update(suite_namespace())``.
    """
    from conformance import fixtures

    namespace: dict[str, Any] = {}
    for module in [fixtures, *suite_modules()]:
        for name, obj in vars(module).items():
            if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
                continue  # imported, not defined there
            if name in namespace:
                raise ImportError(
                    f"conformance: {name!r} is defined in both "
                    f"{namespace[name].__module__} and {module.__name__}"
                )
            namespace[name] = obj
    return namespace
