"""The adapter conformance suite (``conformance/``), run for every installed adapter.

The host fixtures the suite needs are ``adapter`` and ``async_adapter`` (here,
each parametrised over every installed adapter, whichever sides it has;
``QUE_TEST_ADAPTERS`` narrows them: a side an adapter lacks is declared
unsupported) and ``server_dsn`` (``conftest.py``). The suite brings its tests
and other fixtures; a test module dropped into ``conformance/`` is picked up
here too. ``python -m conformance`` runs the same tests against one adapter,
with a summary.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from que_core import plugins
from que_core.connection import Adapter, AsyncAdapter
from que_core.testing import databases

try:
    import conformance
except ImportError:  # the suite lives at the top of the repository, beside tests/
    sys.path.append(str(Path(__file__).resolve().parent.parent))
    import conformance

globals().update(conformance.suite_namespace())


def _names() -> list[str]:
    return sorted(databases.adapter_names())


@pytest.fixture(scope="session", params=_names())
def adapter(request: pytest.FixtureRequest) -> Adapter:
    return conformance.sync_side(request.param)


@pytest.fixture(scope="session", params=_names())
def async_adapter(request: pytest.FixtureRequest) -> AsyncAdapter:
    return conformance.async_side(request.param)


def test_the_runner_prints_no_assert_rewrite_warning(server_dsn: str) -> None:
    import subprocess


    name = sorted(plugins.installed_adapters())[0]
    out = subprocess.run(
        [sys.executable, "-m", "conformance", "--adapter", name, "--dsn", server_dsn,
         "--", "-k", "registered_under_its_name or close_twice"],
        cwd=Path(__file__).resolve().parent.parent, capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "2 passed" in out.stdout
    assert "que-core adapter conformance" in out.stdout  # the summary
    assert "Warning" not in out.stdout + out.stderr


def test_the_runner_without_its_extra_says_what_to_install_in_one_line() -> None:
    import subprocess

    hide_pytest = (  # as if `pip install que-core` had not brought the conformance extra
        "import runpy, sys; sys.modules['pytest'] = None; sys.argv = ['conformance']; "
        "runpy.run_module('conformance', run_name='__main__', alter_sys=True)"
    )
    out = subprocess.run([sys.executable, "-c", hide_pytest],
                         cwd=Path(__file__).resolve().parent.parent, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode != 0
    assert out.stdout == ""
    assert out.stderr.strip().splitlines() == [
        "the que-core conformance suite needs pytest: pip install 'que-core[conformance]'"]
