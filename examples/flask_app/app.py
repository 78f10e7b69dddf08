"""Example: a Flask app (SQLAlchemy) that enqueues a job from a view, with
the in-process worker of the que-core Flask extension.

    pip install '.[flask,sqlalchemy]' ./que_adapters/psycopg   # in the repository's top directory
    cd examples/flask_app
    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres flask --app app run
    curl -d email=a@example.com http://127.0.0.1:5000/signups
    curl http://127.0.0.1:5000/signups/1        # "welcomed": true once worked
"""

from __future__ import annotations

import os
from typing import Any

from flask import Flask, abort, request
from sqlalchemy import Boolean, Column, Integer, MetaData, String, Table, create_engine
from sqlalchemy.orm import scoped_session, sessionmaker

from que_core import Job
from que_core.contrib.flask import Que

metadata = MetaData()
signups = Table(
    "flask_signups",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("email", String, nullable=False),
    Column("welcomed", Boolean, nullable=False, default=False),
)

que = Que()


class WelcomeSignup(Job):
    def run(self, signup_id: int) -> None:
        assert self.db is not None
        with self.transaction():
            self.db.execute("UPDATE flask_signups SET welcomed = true WHERE id = %s", (signup_id,))
            self.destroy()


def create_app(database_url: str | None = None, **config: Any) -> Flask:
    url = database_url or os.environ.get("DATABASE_URL", "postgresql://127.0.0.1/postgres")
    app = Flask(__name__)
    app.config.update(QUE_DSN=url, QUE_MIGRATE=True, **config)  # the worker starts lazily
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    metadata.create_all(engine)
    Session = scoped_session(sessionmaker(engine))
    que.init_app(app)

    @app.teardown_appcontext
    def remove_session(exc: BaseException | None) -> None:
        Session.remove()

    @app.post("/signups")
    def create_signup() -> tuple[dict[str, Any], int]:
        session = Session()
        signup_id = session.execute(
            signups.insert().values(email=request.form["email"]).returning(signups.c.id)
        ).scalar_one()
        WelcomeSignup.enqueue(signup_id, conn=session)  # in the session's transaction
        session.commit()
        return {"id": signup_id}, 201

    @app.get("/signups/<int:signup_id>")
    def get_signup(signup_id: int) -> dict[str, Any]:
        row = Session().execute(signups.select().where(signups.c.id == signup_id)).first()
        if row is None:
            abort(404)
        return {"id": row.id, "email": row.email, "welcomed": row.welcomed}

    return app
