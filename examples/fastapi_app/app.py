"""Example: a FastAPI app that enqueues a job from a request handler, and
works it in-process (the worker lives in the app's lifespan).

    pip install '.[fastapi]' ./que_adapters/psycopg uvicorn   # in the repository's top directory
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

import psycopg
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

from que_core import Job
from que_core.contrib.fastapi import que_lifespan


class SendWelcome(Job):
    """Marks the signup welcomed (a real one would send an email) and
    deletes itself in the same transaction."""

    def run(self, signup_id: int) -> None:
        assert self.db is not None
        with self.transaction():
            self.db.execute("UPDATE signups SET welcomed = true WHERE id = %s", (signup_id,))
            self.destroy()


class Signup(BaseModel):
    email: str


def create_app(database_url: str | None = None, **worker_options: Any) -> FastAPI:
    dsn = database_url or os.environ.get("DATABASE_URL", "postgresql://127.0.0.1/postgres")

    @asynccontextmanager
    async def tables(app: FastAPI) -> AsyncIterator[None]:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS signups (id bigserial PRIMARY KEY, "
                "email text NOT NULL, welcomed bool NOT NULL DEFAULT false)"
            )
        yield

    # The worker starts with the app (migrating the que-core schema first)
    # and stops with it, letting running jobs finish.
    app = FastAPI(lifespan=que_lifespan(dsn, migrate=True, lifespan=tables, **worker_options))

    @app.post("/signups", status_code=201)
    def create_signup(signup: Signup) -> dict[str, int]:
        with psycopg.connect(dsn) as conn:  # one transaction, committed at the end
            row = conn.execute(
                "INSERT INTO signups (email) VALUES (%s) RETURNING id", (signup.email,)
            ).fetchone()
            assert row is not None
            SendWelcome.enqueue(row[0], conn=conn)  # commits with the signup
        return {"id": row[0]}

    @app.get("/signups/{signup_id}")
    def get_signup(signup_id: int) -> dict[str, Any]:
        with psycopg.connect(dsn) as conn:
            row = conn.execute(
                "SELECT id, email, welcomed FROM signups WHERE id = %s", (signup_id,)
            ).fetchone()
        if row is None:
            raise HTTPException(404)
        return {"id": row[0], "email": row[1], "welcomed": row[2]}

    return app


app = create_app()
