"""que web as Django URLs behind Django's staff login (a project of its own,
in a subprocess: tests/django_web/run.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("django")
pytest.importorskip("a2wsgi")

from que_core import plugins
from que_core.testing import databases

ROOT = Path(__file__).resolve().parent.parent


def test_staff_only_and_its_actions_work() -> None:
    adapter = plugins.get_adapter("psycopg")
    with databases.temporary_database(adapter, databases.server_dsn()) as dsn:
        env = {**os.environ, "QUE_DJANGO_WEB_DSN": dsn, "PYTHONPATH": str(ROOT)}
        done = subprocess.run([sys.executable, "-m", "tests.django_web.run"], cwd=ROOT,
                              env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    status, location = seen["anonymous"]
    assert status == 302 and location.startswith("/admin/login/?next=/admin/que/")
    assert seen["plain"] == 302  # logged in, not staff: to the login page too
    assert seen["staff"] == [200, True, True]
    assert seen["static"] == 200
    assert seen["forged"] == 403
    status, location = seen["retry"]
    assert status == 303 and location.startswith("/admin/que/jobs/")
    assert seen["ran_now"] is True
