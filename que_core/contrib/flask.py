"""Flask extension: an in-process que-core worker living with the app.

::

    from que_core.contrib.flask import Que

    que = Que()

    def create_app():
        app = Flask(__name__)
        app.config["QUE_DSN"] = "postgresql://..."
        que.init_app(app)
        return app

Configuration (``app.config``):

``QUE_DSN``
    the jobs' database (default ``$DATABASE_URL``).
``QUE_ADAPTER``
    adapter name (default: the installed one).
``QUE_QUEUES``, ``QUE_WORKER_COUNT``, ``QUE_WORKER_PRIORITIES``,
``QUE_POLL_INTERVAL``, ``QUE_BATCH_SIZE``, ``QUE_LISTEN``
    as for ``que work``, with its defaults (``"QUE_"`` and a worker option's
    Django key: :data:`que_core.options.WORKER_SPECS`).
``QUE_START_WORKER``
    ``"lazy"`` (default): start on the app's first request, in the process
    that serves it (after a pre-forking server forked); ``"eager"``: start
    in ``init_app``; ``False``: never (run ``que work`` / ``flask que work``).
``QUE_MIGRATE``
    migrate the schema before starting the worker (default False).
``QUE_SHUTDOWN_TIMEOUT``
    seconds to let running jobs finish when stopping (default 30).

The worker stops at interpreter exit, or with ``que.stop(app)``. ``flask que
migrate`` and ``flask que work`` are added to the app's CLI; ``flask que work``
takes ``que work``'s worker flags (``-q``, ``-w``, ``-p``, ``-i``,
``--batch-size``, ``--shutdown-timeout``, ``--listen/--no-listen``,
``--metrics-port``, ``--metrics-host``, ``--processes``), which override the
app's settings, and exits as ``que work`` does; with ``--processes N`` (or
``QUE_PROCESSES``) it runs N worker processes under a supervisor, each
started as the command was (:mod:`que_core.supervisor`). The in-app worker
is one. Enqueue in a
view with the connection your app already has (a SQLAlchemy session, a
driver connection): the job commits with it.
"""

from __future__ import annotations

from typing import Any

try:
    import click
    from flask import Flask, current_app
except ImportError as exc:  # pragma: no cover - exercised by a test that hides Flask
    raise ImportError(
        "que_core.contrib.flask needs Flask (que-core's flask extra): pip install flask"
    ) from exc

from que_core import foreground, options
from que_core.cli.group import SHORT_EPILOG, errors
from que_core.cli.settings import worker_option_list
from que_core.contrib.lifecycle import ManagedWorker
from que_core.dsn import check_dsn
from que_core.errors import ConfigurationError
from que_core.worker import Worker

__all__ = ["Que"]

#: The app.config key of each worker option Flask reads.
_CONFIG_KEYS = {s.name: f"QUE_{s.django_key}" for s in options.WORKER_SPECS if s.django_key}

_DEFAULTS: dict[str, Any] = {
    "QUE_DSN": None,
    "QUE_ADAPTER": None,
    **{key: options.DEFAULTS[name] for name, key in _CONFIG_KEYS.items()},
    "QUE_START_WORKER": "lazy",
    "QUE_MIGRATE": False,
    # in-process: a deadline, so that the app's exit does not wait for ever
    "QUE_SHUTDOWN_TIMEOUT": 30.0,
}


class Que:
    """The extension; one instance can serve several apps (app factory)."""

    def __init__(self, app: Flask | None = None, **worker_kwargs: Any) -> None:
        self.worker_kwargs = worker_kwargs
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        for key, value in _DEFAULTS.items():
            app.config.setdefault(key, value)
        start = app.config["QUE_START_WORKER"]
        if start not in ("lazy", "eager", False, None):
            raise ConfigurationError(
                f"QUE_START_WORKER is {start!r}: use 'lazy', 'eager' or False"
            )
        managed = ManagedWorker(
            app.config["QUE_DSN"],
            adapter=app.config["QUE_ADAPTER"],
            migrate=bool(app.config["QUE_MIGRATE"]),
            shutdown_timeout=app.config["QUE_SHUTDOWN_TIMEOUT"],
            **self._worker_options(app),
        )
        app.extensions["que"] = managed
        if start == "eager":
            managed.start()
        elif start == "lazy":

            def start_worker() -> None:  # returns None: Flask goes on to the view
                if managed.worker is None:
                    managed.start()

            app.before_request(start_worker)
        app.cli.add_command(_cli(managed))

    def _worker_options(self, app: Flask) -> dict[str, Any]:
        kwargs = options.worker_kwargs(
            {name: app.config[key] for name, key in _CONFIG_KEYS.items()})
        kwargs.update(self.worker_kwargs)
        return kwargs

    @staticmethod
    def _managed(app: Flask | None) -> ManagedWorker:
        app = app or current_app
        try:
            managed: ManagedWorker = app.extensions["que"]
        except KeyError:
            raise ConfigurationError("que.init_app(app) was not called for this app") from None
        return managed

    def start(self, app: Flask | None = None) -> Worker:
        """Start the app's worker (if it is not running); return it."""
        return self._managed(app).start()

    def stop(self, app: Flask | None = None) -> bool:
        """Stop the app's worker; True when every running job finished."""
        return self._managed(app).stop()

    def worker(self, app: Flask | None = None) -> Worker | None:
        """The app's running worker, if any."""
        return self._managed(app).worker


def _describe(name: str) -> str:
    spec = options.SPECS_BY_NAME[name]
    default = f"app.config {_CONFIG_KEYS[name]}" if name in _CONFIG_KEYS else "as que work"
    return f"{spec.help[0].upper()}{spec.help[1:]} [default: {default}]"


def _worker_flags(f: Any) -> Any:
    for decorator in reversed(worker_option_list(_describe)):
        f = decorator(f)
    return f


def _cli(managed: ManagedWorker) -> click.Group:
    @click.group("que", help="que-core jobs.")
    def group() -> None:
        pass

    @group.command("migrate", help="Bring the database to the latest que-core schema.")
    def migrate_command() -> None:
        from que_core.migrations import migrate
        from que_core.plugins import get_adapter

        if not managed.dsn:
            import os

            managed.dsn = os.environ.get("DATABASE_URL")
        if not managed.dsn:
            raise click.UsageError("set QUE_DSN (or DATABASE_URL)")
        with errors():
            conn = get_adapter(managed.adapter).connect(check_dsn(managed.dsn))
        try:
            version = migrate(conn)
        finally:
            conn.close()
        click.echo(f"que-core schema at version {version}")

    @group.command("work", epilog=SHORT_EPILOG, help=(
        "Work jobs in the foreground until SIGINT/SIGTERM, with the app's QUE_* settings; "
        "the flags are `que work`'s and override them. Exit statuses are que work's."))
    @_worker_flags
    @click.option("--supervised", is_flag=True, hidden=True,
                  help="A worker process of `flask que work --processes N`.")
    def work_command(supervised: bool, **flags: Any) -> None:
        from que_core import supervisor

        given = {k: v for k, v in flags.items() if v is not None and v != ()}
        if supervised:  # one of the supervisor's: it serves the metrics
            supervisor.record_metrics(supervisor.child_payload())
            given.pop("metrics_port", None)
        with errors():
            kwargs = {**managed.worker_kwargs, **options.worker_kwargs(given)}
            processes = given.get("processes", current_app.config["QUE_PROCESSES"])
            if processes > 1 and not supervised:
                raise SystemExit(_supervise(managed, kwargs, given, processes))
            in_foreground = ManagedWorker(
                managed.dsn, adapter=managed.adapter, migrate=managed.migrate,
                shutdown_timeout=given.get("shutdown_timeout", managed.shutdown_timeout),
                stop_at_exit=False, **kwargs,
            )
            foreground.work_until_signalled(
                in_foreground.start, lambda worker: in_foreground.stop(),
                given.get("metrics_port"),
                given.get("metrics_host") or options.DEFAULTS["metrics_host"],
            )

    return group


def _supervise(managed: ManagedWorker, kwargs: dict[str, Any], given: dict[str, Any],
               processes: int) -> int:
    from que_core import admin, supervisor
    from que_core.migrations import migrate

    worker = Worker(managed.dsn, adapter=managed.adapter, **kwargs)  # checks them; not started
    conn = worker.adapter.connect(worker.dsn)
    try:  # once here, not by N processes at once; no schema: said once, not in N crash loops
        if managed.migrate:
            migrate(conn)
        else:
            admin.check_schema(conn)
    finally:
        conn.close()
    return supervisor.supervise(
        [*supervisor.this_command(), "--supervised"], processes,
        shutdown_timeout=given.get("shutdown_timeout", managed.shutdown_timeout),
        metrics_port=given.get("metrics_port"),
        metrics_host=given.get("metrics_host") or options.DEFAULTS["metrics_host"],
        connect=lambda: worker.adapter.connect(worker.dsn), queues=worker.queues)
