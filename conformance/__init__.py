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
  for the host fixtures ``adapter`` (the :class:`~que_core.connection.Adapter`
  under test) and ``server_dsn`` (a server on which databases can be created),
  and for the fixtures of :mod:`conformance.fixtures`.
* :mod:`conformance.fixtures`: per-test databases and connections, helpers.
* :mod:`conformance.plugin`: the pytest plugin behind ``python -m
  conformance`` (``--adapter``/``--dsn``, the host fixtures, the summary).

A test that needs a capability an adapter declares it lacks calls
:func:`declared_unsupported`; the summary counts those apart from failures
and other skips.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType
from typing import Any, NoReturn

import pytest

#: The reason prefix of a skip for a capability the adapter declares it lacks.
DECLARED_UNSUPPORTED = "declared unsupported"


def declared_unsupported(what: str) -> NoReturn:
    """Skip this test: the adapter declares it does not support *what*."""
    pytest.skip(f"{DECLARED_UNSUPPORTED}: {what}")


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
