"""`--embedded` and `que demo`: the embedded PostgreSQL (pgserver), its data
directory in a documented place, reused between runs."""

from __future__ import annotations

import json
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from que_core.connection import Adapter
from tests.test_cli_admin import clean_env, que

pytest.importorskip("pgserver")


@pytest.fixture
def data_dir() -> Iterator[Path]:
    # Not under pytest's tmp_path: run as root, pgserver drops to its own user,
    # which must be able to reach the directory (so it is created by que).
    path = Path(tempfile.gettempdir()) / f"que-embedded-{uuid.uuid4().hex[:10]}"
    yield path
    if path.exists():
        import pgserver

        server = pgserver.get_server(path, cleanup_mode="stop")
        server.cleanup()
        shutil.rmtree(path, ignore_errors=True)


@pytest.mark.slow
def test_embedded_server_is_started_reused_and_reported(data_dir: Path) -> None:
    env = clean_env(QUE_EMBEDDED_DIR=str(data_dir))
    env.pop("XDG_RUNTIME_DIR", None)  # platformdirs warns without it: not to be shown
    out = que("migrate", "--embedded", env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    # One line says where the data is, and nothing else is said: no pgserver
    # log lines, no warnings, no DSN.
    line = (f"embedded PostgreSQL: data directory {data_dir} (kept and reused between runs; "
            "set QUE_EMBEDDED_DIR or --embedded-dir to move it)")
    assert out.stderr.splitlines() == [line]
    assert "from version 0 to 7" in out.stdout
    assert (data_dir / "PG_VERSION").exists()

    # The next run finds the same server and the same database.
    out = que("migrate", "--status", "--json", "--embedded", env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stderr.splitlines() == [line]
    assert json.loads(out.stdout)["version"] == 7
    out = que("stats", "--json", "--embedded-dir", str(data_dir),  # the flag form
              env=clean_env(QUE_EMBEDDED="1"), timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["jobs"] == []
    # config names the same place without starting anything.
    cfg = que("config", "--json", env=env)
    settings = json.loads(cfg.stdout)["settings"]
    assert settings["embedded_dir"] == {"value": str(data_dir), "source": "env QUE_EMBEDDED_DIR"}


@pytest.mark.slow
def test_demo_without_a_dsn_uses_the_embedded_server(data_dir: Path) -> None:
    out = que("demo", "--jobs", "60", "--workers", "4", "--embedded-dir", str(data_dir),
              env=clean_env(), timeout=180)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "embedded PostgreSQL" in out.stdout
    assert str(data_dir) in out.stdout
    assert "summary" in out.stdout
    assert (data_dir / "PG_VERSION").exists()


def test_demo_with_a_dsn(server_dsn: str, adapter: Adapter) -> None:
    out = que("demo", "--jobs", "40", "--workers", "4", "--dsn", server_dsn,
              "--adapter", adapter.name, env=clean_env(), timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "summary" in out.stdout
    assert "embedded" not in out.stdout


def test_demo_with_a_dsn_that_does_not_connect() -> None:
    out = que("demo", "--dsn", "postgresql://postgres:hunter2@127.0.0.1:1/x",
              env=clean_env(), timeout=60)
    assert out.returncode == 3
    assert "hunter2" not in out.stdout + out.stderr
