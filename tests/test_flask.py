"""examples/flask_app end to end, and the Flask extension."""

from __future__ import annotations

import pytest

pytest.importorskip("flask")
pytest.importorskip("sqlalchemy")

from flask import Flask

from que_core.contrib.flask import Que
from que_core.errors import ConfigurationError
from tests.examples_support import example_dsn, load  # noqa: F401
from tests.helpers import wait_for


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
        wait_for(lambda: client.get(f"/signups/{signup_id}").get_json()["welcomed"])
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
    with pytest.raises(ImportError, match=r"pip install 'que-core\[flask\]'"):
        importlib.import_module("que_core.contrib.flask")
