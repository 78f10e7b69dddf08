"""Loading the example apps of examples/ (their modules are all called app.py)."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load(name: str) -> ModuleType:
    """examples/<name>/app.py as the module ``example_<name>`` (once)."""
    module_name = f"example_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, EXAMPLES / name / "app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def example_dsn(server_dsn: str) -> Iterator[str]:
    """A new database WITHOUT the que schema (the examples migrate it), as a
    URL (the examples build their SQLAlchemy / psycopg URLs from it)."""
    pytest.importorskip("psycopg")
    from que_core import plugins
    from que_core.testing import databases

    if "psycopg" not in plugins.adapters():
        pytest.skip("the examples use psycopg 3: its adapter is not installed")
    if "://" not in server_dsn:
        pytest.skip("the examples take a postgresql:// URL")
    adapter = plugins.get_adapter("psycopg")
    with databases.temporary_database(adapter, server_dsn) as dsn:
        yield dsn
