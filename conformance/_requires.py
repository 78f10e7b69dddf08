"""Without its extra the suite cannot run: say so in one line, not with a traceback."""

from __future__ import annotations

import importlib.util

#: What the suite runs on: que-core's conformance extra.
NEEDS = ("pytest", "pytest_asyncio")

_missing = [name for name in NEEDS if importlib.util.find_spec(name) is None]
if _missing:
    raise SystemExit(
        f"the que-core conformance suite needs {', '.join(_missing)}: "
        "pip install 'que-core[conformance]'"
    )
