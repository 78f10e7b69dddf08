"""examples/flask_app end to end, and the Flask extension."""

from __future__ import annotations

import pytest

pytest.importorskip("flask")
pytest.importorskip("sqlalchemy")

from flask import Flask

from conformance.fixtures import scalar, wait_until
from que_core.contrib.flask import Que
from que_core.errors import ConfigurationError
from tests.examples_support import example_dsn, load  # noqa: F401
from tests.helpers import end_process


def test_a_signup_is_welcomed_by_the_extensions_worker(example_dsn: str) -> None:  # noqa: F811
    example = load("flask_app")
    app = example.create_app(example_dsn, QUE_POLL_INTERVAL=0.2)
    que = example.que
    assert que.worker(app) is None  # lazy: started by the first request
    client = app.test_client()
    try:
        response = client.post("/signups", data={"email": "a@example.com"})
        assert response.status_code == 201
        worker = que.worker(app)
        assert worker is not None and worker.running
        signup_id = response.get_json()["id"]
        wait_until(lambda: client.get(f"/signups/{signup_id}").get_json()["welcomed"])
        client.get(f"/signups/{signup_id}")
        assert que.worker(app) is worker  # started once
    finally:
        assert que.stop(app) is True  # stopped cleanly
    assert not worker.running and que.worker(app) is None


def test_eager_start_cli_and_bad_configuration(example_dsn: str) -> None:  # noqa: F811
    app = Flask("eager")
    app.config.update(QUE_DSN=example_dsn, QUE_START_WORKER="eager", QUE_MIGRATE=True,
                      QUE_QUEUES=["a", "b"])
    que = Que(app)
    try:
        worker = que.worker(app)
        assert worker is not None and worker.queues == ["a", "b"]
        result = app.test_cli_runner().invoke(args=["que", "migrate"])
        assert result.exit_code == 0 and "version 7" in result.output
    finally:
        que.stop(app)
    off = Flask("off")
    off.config.update(QUE_DSN=example_dsn, QUE_START_WORKER=False)
    Que(off)
    assert off.test_client().get("/nothing").status_code == 404
    assert que.worker(off) is None
    bad = Flask("bad")
    bad.config["QUE_START_WORKER"] = "sometimes"
    with pytest.raises(ConfigurationError, match="QUE_START_WORKER"):
        Que(bad)
    with pytest.raises(ConfigurationError, match="init_app"):
        Que().worker(Flask("never"))


def test_without_flask_the_import_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib
    import sys

    monkeypatch.setitem(sys.modules, "flask", None)
    monkeypatch.delitem(sys.modules, "que_core.contrib.flask")
    with pytest.raises(ImportError, match=r"pip install flask"):
        importlib.import_module("que_core.contrib.flask")


def test_flask_que_work_takes_que_works_flags(example_dsn: str) -> None:  # noqa: F811
    import os
    import signal
    import subprocess
    import sys

    from que_core import plugins
    from tests.examples_support import EXAMPLES


    env = dict(os.environ, DATABASE_URL=example_dsn)
    base = [sys.executable, "-m", "flask", "--app", "app", "que", "work"]
    help_text = subprocess.run([*base, "--help"], cwd=EXAMPLES / "flask_app", env=env,
                               capture_output=True, text=True, timeout=60).stdout
    for flag in ("--queue", "--workers", "--priorities", "--poll-interval", "--batch-size",
                 "--shutdown-timeout", "--listen / --no-listen", "--metrics-port"):
        assert flag in help_text
    bad = subprocess.run([*base, "-p", "10,soon"], cwd=EXAMPLES / "flask_app", env=env,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2
    assert "worker priority 'soon' is neither an integer nor 'any'" in bad.stderr

    proc = subprocess.Popen(
        [*base, "-w", "2", "-q", "signups", "-q", "other", "--no-listen", "-i", "0.3"],
        cwd=EXAMPLES / "flask_app", env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)
    conn = plugins.get_adapter("psycopg").connect(example_dsn)
    try:
        def registered() -> object:
            if proc.poll() is not None:
                raise AssertionError(proc.communicate()[0])
            if not scalar(conn, "SELECT to_regclass('que_lockers') IS NOT NULL"):
                return None
            rows = conn.execute("SELECT worker_count, queues, listening FROM que_lockers")
            return rows[0] if rows else None

        assert tuple(wait_until(registered, within=30)) == (2, ["signups", "other"], False)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        conn.close()
        end_process(proc)


def test_flask_que_work_with_processes(example_dsn: str) -> None:  # noqa: F811
    import os
    import signal
    import socket
    import subprocess
    import sys

    from conformance.fixtures import scalar
    from que_core import plugins
    from tests.examples_support import EXAMPLES
    from tests.test_cli_work import _Reader
    from tests.test_metrics import scrape

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    env = dict(os.environ, DATABASE_URL=example_dsn)
    proc = subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "app", "que", "work", "--processes", "2",
         "-w", "1", "-q", "signups", "-i", "0.3", "--metrics-port", str(port)],
        cwd=EXAMPLES / "flask_app", env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT)
    out = _Reader(proc)
    conn = plugins.get_adapter("psycopg").connect(example_dsn)
    try:
        def registered() -> object:
            if proc.poll() is not None:
                raise AssertionError(out.text)
            if not scalar(conn, "SELECT to_regclass('que_lockers') IS NOT NULL"):
                return None
            rows = conn.execute("SELECT ruby_pid, worker_count FROM que_lockers")
            return rows if len(rows) == 2 else None

        rows = wait_until(registered, within=60)
        assert {int(r[1]) for r in rows} == {1} and proc.pid not in {int(r[0]) for r in rows}
        # the children record, the supervisor alone serves
        wait_until(lambda: scrape(port).get(("que_workers", ())) == 2, within=20, interval=0.2)
        assert sorted(conn.execute("SELECT ruby_pid, worker_count FROM que_lockers")) == sorted(
            rows)  # neither child failed (as it would, serving the same port) and was replaced
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, out.text
        assert scalar(conn, "SELECT count(*) FROM que_lockers") == 0
    finally:
        conn.close()
        end_process(proc)
