"""Any ASGI app: run an in-process que-core worker with the app's lifespan.

::

    from que_core.contrib.asgi import QueLifespanMiddleware

    app = QueLifespanMiddleware(app, dsn="postgresql://...", queues=["default"])

The worker starts when the server sends ``lifespan.startup`` (before the
app's own startup) and stops after the app's shutdown completed. Needs a
server that speaks the lifespan protocol (uvicorn, hypercorn, daphne, ...);
for FastAPI or Starlette, :func:`que_core.contrib.fastapi.que_lifespan` is
the simpler way. Arguments are :class:`~que_core.contrib.lifecycle.ManagedWorker`'s.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from que_core.contrib.lifecycle import ManagedWorker

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class QueLifespanMiddleware:
    """Wraps *app*; starts the worker at startup, stops it at shutdown."""

    def __init__(self, app: ASGIApp, **managed_kwargs: Any) -> None:
        self.app = app
        self.managed = ManagedWorker(**managed_kwargs)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        managed = self.managed

        async def receive_wrapper() -> Message:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await asyncio.to_thread(managed.start)
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    raise
            return message

        async def send_wrapper(message: Message) -> None:
            if message["type"] in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
                await asyncio.to_thread(managed.stop)
            await send(message)

        await self.app(scope, receive_wrapper, send_wrapper)
