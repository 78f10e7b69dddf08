"""Settings: flags, then environment variables, then [tool.que] in
pyproject.toml; `que config` shows each one and its source, passwords masked."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conformance.fixtures import scalar, wait_until
from conformance.jobs import SelfResolving
from que_core import settings_file
from que_core.cli.settings import with_connect_timeout
from que_core.connection import Adapter, Connection
from que_core.errors import ConfigurationError
from tests.helpers import log_tags
from tests.test_cli_admin import ROOT, clean_env, que


def write_pyproject(directory: Path, body: str) -> Path:
    path = directory / "pyproject.toml"
    path.write_text('[project]\nname = "app"\n\n[tool.que]\n' + body, encoding="utf-8")
    return path


def config(*args: str, cwd: Path, **env: str) -> dict[str, dict[str, object]]:
    out = que("config", "--json", *args, cwd=cwd, env=clean_env(**env))
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert isinstance(data["settings"], dict)
    return data["settings"]


def test_flags_beat_env_beat_pyproject_beat_defaults(tmp_path: Path) -> None:
    pyproject = write_pyproject(tmp_path, """
dsn = "postgresql://app:filepw@db/app"
workers = 3
queues = ["a", "b"]
poll_interval = 2.5
log_format = "json"
""")
    s = config(cwd=tmp_path)
    assert s["workers"] == {"value": 3, "source": f"pyproject {pyproject}"}
    assert s["queues"]["value"] == ["a", "b"]
    assert s["poll_interval"]["value"] == 2.5
    assert s["dsn"] == {"value": "postgresql://app:****@db/app",
                        "source": f"pyproject {pyproject}"}
    assert s["batch_size"] == {"value": 20, "source": "default"}
    assert s["log_level"] == {"value": "info", "source": "default"}

    s = config(cwd=tmp_path, QUE_WORKERS="4", QUE_QUEUES="x, y",
               DATABASE_URL="postgresql://app:envpw@db/app")
    assert s["workers"] == {"value": 4, "source": "env QUE_WORKERS"}
    assert s["queues"] == {"value": ["x", "y"], "source": "env QUE_QUEUES"}
    assert s["dsn"] == {"value": "postgresql://app:****@db/app", "source": "env DATABASE_URL"}
    assert s["log_format"]["source"] == f"pyproject {pyproject}"

    # QUE_DSN is que's own and wins over the generic DATABASE_URL.
    s = config(cwd=tmp_path, QUE_DSN="host=db password=quepw",
               DATABASE_URL="postgresql://app:envpw@db/app")
    assert s["dsn"] == {"value": "host=db password=****", "source": "env QUE_DSN"}

    s = config("--workers", "5", "-q", "z", "--dsn", "postgresql://u:flagpw@h/d",
               "--no-listen", cwd=tmp_path, QUE_WORKERS="4", QUE_LISTEN="true")
    assert s["workers"] == {"value": 5, "source": "flag --workers"}
    assert s["queues"] == {"value": ["z"], "source": "flag --queue"}
    assert s["dsn"] == {"value": "postgresql://u:****@h/d", "source": "flag --dsn"}
    assert s["listen"] == {"value": False, "source": "flag --listen/--no-listen"}


def test_config_text_masks_passwords_and_names_the_pyproject(tmp_path: Path) -> None:
    write_pyproject(tmp_path, 'dsn = "postgresql://app:filepw@db/app"\n')
    sub = tmp_path / "src" / "pkg"
    sub.mkdir(parents=True)
    out = que("config", cwd=sub, env=clean_env())  # found from a subdirectory
    assert out.returncode == 0, out.stderr
    assert "filepw" not in out.stdout
    assert "postgresql://app:****@db/app" in out.stdout
    assert f"pyproject.toml: {tmp_path / 'pyproject.toml'}" in out.stdout
    row = next(ln for ln in out.stdout.splitlines() if ln.startswith("workers"))
    assert row.split() == ["workers", "6", "default"]
    out = que("config", cwd=tmp_path, env=clean_env(QUE_DSN="user=u password='a b'"))
    assert "a b" not in out.stdout


def test_embedded_dir_defaults_to_the_documented_place(tmp_path: Path) -> None:
    s = config(cwd=tmp_path, HOME=str(tmp_path), XDG_DATA_HOME="")
    home = tmp_path / ".local" / "share" / "que-core" / "pgdata"
    expected = "/var/lib/que-core/pgdata" if os.geteuid() == 0 else str(home)  # as root: not ~
    assert s["embedded_dir"] == {"value": expected, "source": "default"}
    s = config(cwd=tmp_path, QUE_EMBEDDED_DIR="/srv/pg")
    assert s["embedded_dir"] == {"value": "/srv/pg", "source": "env QUE_EMBEDDED_DIR"}


@pytest.mark.parametrize(("env", "body", "message"), [
    ({"QUE_WORKERS": "many"}, "", "bad value 'many' for workers ($QUE_WORKERS)"),
    ({"QUE_WORKERS": "0"}, "", "must be positive"),
    ({"QUE_LOG_FORMAT": "xml"}, "", "expected one of text, json"),
    ({"QUE_LISTEN": "maybe"}, "", "expected true or false"),
    ({}, "wokers = 3\n", "unknown [tool.que] setting(s): wokers"),
    ({}, 'workers = "x"\n', "bad value 'x' for workers ([tool.que] in"),
    ({}, "workers = [\n", "cannot read"),
])
def test_bad_settings_exit_2(tmp_path: Path, env: dict[str, str], body: str,
                             message: str) -> None:
    write_pyproject(tmp_path, body)
    for cmd in (["config"], ["work", "--dsn", "postgresql://x@127.0.0.1:1/x"], ["stats"]):
        out = que(*cmd, cwd=tmp_path, env=clean_env(**env))
        assert out.returncode == 2, (cmd, out.stderr)
        assert message in out.stderr


def test_work_takes_its_settings_from_pyproject(
    tmp_path: Path, db: Connection, dsn: str, adapter: Adapter
) -> None:
    write_pyproject(tmp_path, f"""
dsn = "{dsn}"
adapter = "{adapter.name}"
queues = ["special"]
workers = 2
poll_interval = 0.2
modules = ["conformance.jobs"]
""")
    env = clean_env(PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "que_core.cli", "work"], cwd=tmp_path,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_until(lambda: scalar(db, "SELECT count(*) FROM que_lockers") == 1, within=20)
        assert db.execute("SELECT queues, worker_count FROM que_lockers") == [(["special"], 2)]
        SelfResolving.enqueue("from-pyproject", conn=db.raw, queue="special")
        wait_until(lambda: log_tags(db) == ["from-pyproject"], within=20)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
        assert proc.stderr is not None
        proc.stderr.close()


# -- in process ---------------------------------------------------------------------


def test_resolve_reports_sources() -> None:
    values = settings_file.resolve(
        {"workers": None, "queues": (), "dsn": "postgresql://x"},
        environ={"QUE_WORKERS": "7", "QUE_POLL_INTERVAL": ""},
        pyproject=False,
    )
    assert values["workers"] == settings_file.Value(7, "env QUE_WORKERS")
    assert values["queues"] == settings_file.Value(["default"], "default")
    assert values["dsn"] == settings_file.Value("postgresql://x", "flag --dsn")
    assert values["poll_interval"].source == "default"  # an empty variable is unset


def test_a_secret_is_not_quoted_in_a_bad_value_message() -> None:
    with pytest.raises(ConfigurationError) as info:
        settings_file._convert(settings_file.SPECS_BY_NAME["dsn"], ["secret-pw"], "here")
    assert "secret-pw" not in str(info.value)
    assert "bad value **** for dsn" in str(info.value)


@pytest.mark.parametrize(("dsn", "expected"), [
    ("postgresql://u:p@h/d", "postgresql://u:p@h/d?connect_timeout=5"),
    ("postgresql://u@h/d?sslmode=require", "postgresql://u@h/d?sslmode=require&connect_timeout=5"),
    ("postgresql://u@h/d?connect_timeout=30", "postgresql://u@h/d?connect_timeout=30"),
    ("host=h user=u", "host=h user=u connect_timeout=5"),
    ("host=h connect_timeout = 9", "host=h connect_timeout = 9"),
])
def test_with_connect_timeout(dsn: str, expected: str) -> None:
    assert with_connect_timeout(dsn, 5) == expected
    assert with_connect_timeout(dsn, 0) == dsn
