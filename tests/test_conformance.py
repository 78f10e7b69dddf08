"""The adapter conformance suite (``conformance/``), run for every installed adapter.

``conftest.py`` provides the host fixtures the suite needs: ``adapter`` (one
per installed adapter; ``QUE_TEST_ADAPTERS`` narrows them) and ``server_dsn``.
The suite brings its tests and other fixtures; a test module dropped into
``conformance/`` is picked up here too. ``python -m conformance`` runs the
same tests against one adapter, with a summary.
"""

from __future__ import annotations

import sys
from pathlib import Path

try:
    import conformance
except ImportError:  # the suite lives at the top of the repository, beside tests/
    sys.path.append(str(Path(__file__).resolve().parent.parent))
    import conformance

globals().update(conformance.suite_namespace())
