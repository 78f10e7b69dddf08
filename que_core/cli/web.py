"""``que web``: serve the dashboard (:mod:`que_core.web`) with uvicorn."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Any

import click

from que_core.cli.group import EXIT_USAGE, SHORT_EPILOG, QueCliError, main
from que_core.cli.settings import Settings, connection_options

PASSWORD_ENV = "QUE_WEB_PASSWORD"


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def read_password(password_file: Path | None) -> str | None:
    """The dashboard's password: the first line of *password_file*, else
    $QUE_WEB_PASSWORD; None when neither is given. An empty one is refused."""
    if password_file is not None:
        try:
            text = password_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise QueCliError(f"cannot read the password file {str(password_file)!r}: {exc}",
                              EXIT_USAGE) from None
        lines = text.splitlines()
        password = lines[0] if lines else ""
        source = f"the password file {str(password_file)!r}"
    elif PASSWORD_ENV in os.environ:
        password, source = os.environ[PASSWORD_ENV], f"${PASSWORD_ENV}"
    else:
        return None
    if not password:
        raise QueCliError(f"{source} is empty: an empty password would let anyone in",
                          EXIT_USAGE)
    return password


@main.command(epilog=SHORT_EPILOG, short_help="Serve the web dashboard (needs the web extra).")
@connection_options
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Without a password only loopback addresses "
                   "(this machine) are allowed.")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True)
@click.option("--password-file", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help=f"Ask for the password in this file's first line (HTTP basic auth, any "
                   f"user name) [else ${PASSWORD_ENV}].")
@click.option("--read-only", is_flag=True, help="Show everything, change nothing: no actions.")
@click.option("--refresh", type=click.FloatRange(min=0.5), default=3.0, show_default=True,
              help="Seconds between the live counts' and running list's refreshes.")
@click.option("--ssl-certfile", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Serve HTTPS with this certificate (and --ssl-keyfile).")
@click.option("--ssl-keyfile", type=click.Path(exists=True, dir_okay=False), default=None)
@click.argument("modules", nargs=-1)
def web(host: str, port: int, password_file: Path | None, read_only: bool, refresh: float,
        ssl_certfile: str | None, ssl_keyfile: str | None, modules: tuple[str, ...],
        **opts: Any) -> None:
    """Serve the dashboard: the queues' counts and a chart of the last hour,
    jobs by queue, class, state, tag and error, a job's page, the running jobs
    and their workers; retry, expire and delete, one job or every job of a
    filter (running jobs are left alone, as by `que jobs`).

    Without a password ($QUE_WEB_PASSWORD or --password-file) it serves this
    machine only (--host must be a loopback address). --read-only hides and
    refuses every action. The schedules page shows the periodic jobs of the
    job MODULES ($QUE_MODULES, [tool.que] modules) and [tool.que.schedules],
    as `que schedules list` does. Ctrl-C stops it."""
    try:
        import uvicorn

        from que_core.web import create_app
    except ImportError:
        raise QueCliError("que web needs que-core's web extra: pip install 'que-core[web]'",
                          EXIT_USAGE) from None
    password = read_password(password_file)
    if password is None and not _loopback(host):
        raise QueCliError(
            f"--host {host} without a password would let anyone who reaches it see and "
            f"change every job: set ${PASSWORD_ENV} or --password-file, or keep the default "
            "--host 127.0.0.1", EXIT_USAGE)
    if bool(ssl_certfile) != bool(ssl_keyfile):
        raise QueCliError("--ssl-certfile and --ssl-keyfile go together", EXIT_USAGE)
    from que_core.cli.work import import_modules
    from que_core.schedules import declared
    from que_core.settings_file import read_schedules

    cfg = Settings({**opts, "modules": modules})
    import_modules(cfg["modules"])
    with cfg.errors():
        plan = declared(read_schedules())
    with cfg.session():  # the database answers and has the schema, before serving
        pass
    app = create_app(cfg.dsn(), adapter=cfg.adapter(), password=password, read_only=read_only,
                     refresh=refresh, schedules=plan)
    scheme = "https" if ssl_certfile else "http"
    shown = f"[{host}]" if ":" in host else host
    notes = ["read-only" if read_only else "actions on"]
    if password is None:
        notes.append("no password set, so this machine only")
    else:
        notes.append("password required")
        if not ssl_certfile and not _loopback(host):
            notes.append("plain HTTP: put it behind TLS, the password travels in clear")
    click.echo(f"que web: {scheme}://{shown}:{port}/ ({'; '.join(notes)}); Ctrl-C stops it",
               err=True)
    uvicorn.run(app, host=host, port=port, log_level=cfg["log_level"].lower(),
                ssl_certfile=ssl_certfile, ssl_keyfile=ssl_keyfile, access_log=False)
