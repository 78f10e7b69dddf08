"""Example: an async FastAPI app that enqueues a job in the request's own
transaction, on a connection from an async pool, and works it in-process
(the worker lives in the app's lifespan; the job is ``async def``, so it
runs on the worker's event loop).

    # in the repository's top directory:
    pip install '.[fastapi]' ./que_adapters/psycopg psycopg-pool uvicorn
    cd examples/fastapi_app
    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres uvicorn app:app
    curl -H 'content-type: application/json' -d '{"email": "a@example.com"}' \
         http://127.0.0.1:8000/signups
    curl http://127.0.0.1:8000/signups/1        # "welcomed": true once worked
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel

from que_core import Job
from que_core.contrib.fastapi import que_lifespan


class SendWelcome(Job):
    """Marks the signup welcomed (a real one would send an email) and
    deletes itself in the same transaction, on its own async session."""

    async def run(self, signup_id: int) -> None:
        async with self.atransaction():
            await self.db.execute("UPDATE signups SET welcomed = true WHERE id = %s",
                                  (signup_id,))
            await self.adestroy()


class Signup(BaseModel):
    email: str


def create_app(database_url: str | None = None, **worker_options: Any) -> FastAPI:
    dsn = database_url or os.environ.get("DATABASE_URL", "postgresql://127.0.0.1/postgres")

    @asynccontextmanager
    async def pool(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncConnectionPool(dsn, min_size=1, max_size=4, open=False) as p:
            async with p.connection() as conn:
                await conn.execute(
                    "CREATE TABLE IF NOT EXISTS signups (id bigserial PRIMARY KEY, "
                    "email text NOT NULL, welcomed bool NOT NULL DEFAULT false)"
                )
            app.state.pool = p
            yield

    # The worker starts with the app (migrating the que-core schema first)
    # and stops with it, letting running jobs finish.
    app = FastAPI(lifespan=que_lifespan(dsn, migrate=True, lifespan=pool, **worker_options))

    @app.post("/signups", status_code=201)
    async def create_signup(signup: Signup, request: Request) -> dict[str, int]:
        # One transaction: the pool's connection commits when the block ends
        # (and rolls back, the job with it, if it raises).
        async with request.app.state.pool.connection() as conn:
            cur = await conn.execute(
                "INSERT INTO signups (email) VALUES (%s) RETURNING id", (signup.email,)
            )
            row = await cur.fetchone()
            assert row is not None
            await SendWelcome.aenqueue(row[0], conn=conn)  # commits with the signup
        return {"id": row[0]}

    @app.get("/signups/{signup_id}")
    async def get_signup(signup_id: int, request: Request) -> dict[str, Any]:
        async with request.app.state.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT id, email, welcomed FROM signups WHERE id = %s", (signup_id,)
            )
            row = await cur.fetchone()
        if row is None:
            raise HTTPException(404)
        return {"id": row[0], "email": row[1], "welcomed": row[2]}

    return app


app = create_app()
