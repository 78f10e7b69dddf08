"""Importing the job modules ``que work`` is given, without the current
directory on ``sys.path``.

A module there named like an installed package (``psycopg.py`` planted in a
shared directory) would otherwise be imported instead of it, with the
worker's rights. Here only the named job modules are looked up in the
directory, and only when no installed module has that name.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import sys
from pathlib import Path
from types import ModuleType


def import_job_module(name: str, directory: Path) -> ModuleType:
    """Import *name* (``jobs``, ``app.jobs``): from the installed modules, else
    its top-level module or package from *directory*."""
    top = name.partition(".")[0]
    if top not in sys.modules and importlib.util.find_spec(top) is None:
        spec = importlib.machinery.PathFinder.find_spec(top, [str(directory)])
        if spec is None:
            raise ModuleNotFoundError(
                f"No module named {top!r} among the installed modules or in {directory}",
                name=top,
            )
        module = importlib.util.module_from_spec(spec)
        sys.modules[top] = module
        try:
            if spec.loader is not None:
                spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(top, None)
            raise
    return importlib.import_module(name)
