"""examples/fastapi_app end to end, and the ASGI lifespan middleware."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient

from que_core import Worker
from que_core.contrib.asgi import QueLifespanMiddleware
from tests.examples_support import example_dsn, load  # noqa: F401
from tests.helpers import wait_for


def test_a_signup_is_welcomed_by_the_in_process_worker(example_dsn: str) -> None:  # noqa: F811
    example = load("fastapi_app")
    app = example.create_app(example_dsn, poll_interval=0.2)
    with TestClient(app) as client:
        worker: Worker = app.state.que_worker
        assert worker.running
        response = client.post("/signups", json={"email": "a@example.com"})
        assert response.status_code == 201
        signup_id = response.json()["id"]
        wait_for(lambda: client.get(f"/signups/{signup_id}").json()["welcomed"])
        # SendWelcome is async def: the worker's event loop ran it.
        assert worker.async_worker is not None and example.SendWelcome.job_name in (
            worker.async_worker.claimer.classes)
    # The app stopped, and the worker with it.
    assert not worker.running and app.state.que_worker is None


def test_get_worker_dependency_and_missing_lifespan(example_dsn: str) -> None:  # noqa: F811
    from fastapi import Depends, FastAPI

    from que_core.contrib.fastapi import get_worker, que_lifespan

    for lifespan in (que_lifespan(example_dsn, migrate=True), None):
        app = FastAPI(lifespan=lifespan)

        @app.get("/worker")
        def show(worker: Worker = Depends(get_worker)) -> dict[str, Any]:  # noqa: B008
            return {"queues": worker.queues}

        with TestClient(app, raise_server_exceptions=lifespan is not None) as client:
            response = client.get("/worker")
            if lifespan is not None:
                assert response.json() == {"queues": ["default"]}
            else:
                assert response.status_code == 500


def test_asgi_middleware_starts_and_stops_the_worker(example_dsn: str) -> None:  # noqa: F811
    events: list[str] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        assert scope["type"] == "lifespan"
        while True:
            message = await receive()
            events.append(message["type"])
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return

    app = QueLifespanMiddleware(inner, dsn=example_dsn, migrate=True, poll_interval=0.2)

    async def serve() -> list[Any]:
        incoming: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        sent: list[Any] = []

        async def send(message: Any) -> None:
            sent.append((message["type"], app.managed.running))

        task = asyncio.create_task(app({"type": "lifespan"}, incoming.get, send))
        await incoming.put({"type": "lifespan.startup"})
        await incoming.put({"type": "lifespan.shutdown"})
        await task
        return sent

    sent = asyncio.run(serve())
    assert events == ["lifespan.startup", "lifespan.shutdown"]
    # running during startup.complete; stopped before shutdown.complete went out
    assert sent == [("lifespan.startup.complete", True), ("lifespan.shutdown.complete", False)]


def test_without_fastapi_the_import_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib
    import sys

    monkeypatch.setitem(sys.modules, "fastapi", None)
    monkeypatch.delitem(sys.modules, "que_core.contrib.fastapi", raising=False)
    with pytest.raises(ImportError, match=r"pip install fastapi"):
        importlib.import_module("que_core.contrib.fastapi")
