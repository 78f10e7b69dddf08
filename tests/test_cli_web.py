"""`que web` as a subprocess: what it refuses before serving (a public
address without a password, empty passwords), and a real server that asks
for its password."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

from conformance.fixtures import free_port  # noqa: E402
from que_core import plugins  # noqa: E402
from que_core.testing import databases  # noqa: E402
from tests.helpers import logged_database  # noqa: E402
from tests.test_cli_admin import ROOT, clean_env, que  # noqa: E402


@pytest.fixture(scope="module")
def web_dsn() -> Iterator[str]:
    with logged_database() as (dsn, conn):
        conn.execute("INSERT INTO que_jobs (queue, job_class, job_schema_version) "
                     "VALUES ('cli-web-queue', 'Job', 2)")
        yield dsn


def test_a_public_address_needs_a_password(web_dsn: str) -> None:
    for host in ("0.0.0.0", "::", "192.0.2.7"):
        done = que("web", "--dsn", web_dsn, "--adapter", "psycopg", "--host", host)
        assert done.returncode == 2, done.stderr
        assert f"--host {host} without a password" in done.stderr
        assert "QUE_WEB_PASSWORD" in done.stderr


def test_empty_passwords_are_refused(web_dsn: str, tmp_path: Path) -> None:
    done = que("web", "--dsn", web_dsn, "--adapter", "psycopg",
               env=clean_env(QUE_WEB_PASSWORD=""))
    assert done.returncode == 2 and "$QUE_WEB_PASSWORD is empty" in done.stderr
    empty = tmp_path / "pw"
    empty.write_text("\n")
    done = que("web", "--dsn", web_dsn, "--adapter", "psycopg", "--password-file", str(empty))
    assert done.returncode == 2 and "is empty" in done.stderr
    done = que("web", "--dsn", web_dsn, "--adapter", "psycopg",
               "--password-file", str(tmp_path / "missing"))
    assert done.returncode == 2 and "cannot read the password file" in done.stderr


def test_no_schema_is_said_before_serving(tmp_path: Path) -> None:
    adapter = plugins.get_adapter("psycopg")
    with databases.temporary_database(adapter, databases.server_dsn()) as bare:
        done = que("web", "--dsn", bare, "--adapter", "psycopg", "--port", str(free_port()))
    assert done.returncode == 4 and "que migrate" in done.stderr


def serve(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "que_core.cli", "web", *args], cwd=ROOT,
                            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_up(url: str, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1]
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError("que web did not answer")


def stop(proc: subprocess.Popen[str]) -> tuple[int, str]:
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=20)
    return proc.returncode, err


def test_serves_with_its_password(web_dsn: str, tmp_path: Path) -> None:
    port = free_port()
    secret = tmp_path / "password"
    secret.write_text("correct horse\nignored\n")
    proc = serve("--dsn", web_dsn, "--adapter", "psycopg", "--port", str(port),
                 "--password-file", str(secret), "--read-only",
                 env=clean_env(QUE_WEB_PASSWORD="not this one"))
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_up(url, proc)
        assert httpx.get(url).status_code == 401
        auth = {"authorization": "Basic " + base64.b64encode(b"ops:correct horse").decode()}
        page = httpx.get(url, headers=auth)
        assert page.status_code == 200 and "cli-web-queue" in page.text
        assert "read-only" in page.text and 'method="post"' not in page.text
    finally:
        code, err = stop(proc)
    assert code == 0, err
    assert f"que web: http://127.0.0.1:{port}/ (read-only; password required)" in err
    assert "correct horse" not in err and web_dsn not in err


def test_without_a_password_it_says_this_machine_only(web_dsn: str) -> None:
    port = free_port()
    env = clean_env()
    env.pop("QUE_WEB_PASSWORD", None)
    proc = serve("--dsn", web_dsn, "--adapter", "psycopg", "--port", str(port), env=env)
    try:
        wait_up(f"http://127.0.0.1:{port}/", proc)
        assert httpx.get(f"http://127.0.0.1:{port}/").status_code == 200
    finally:
        code, err = stop(proc)
    assert code == 0, err
    assert "no password set, so this machine only" in err
    assert os.environ.get("QUE_TEST_DSN", "@@") not in err
