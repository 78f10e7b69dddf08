"""An embedded PostgreSQL for development and tests, from the pgserver wheel.

pgserver ships PostgreSQL binaries inside a PyPI wheel, so a machine with only
Python gets a real server without a system install or Docker. It runs as the
current user (it drops to an unprivileged user when run as root) and listens
on a Unix socket inside its data directory.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Any

from que_core.errors import ConfigurationError

ENV_DATA_DIR = "QUE_EMBEDDED_DIR"


def default_data_dir() -> Path:
    """Where the embedded server keeps its data: ``$QUE_EMBEDDED_DIR``, else
    ``$XDG_DATA_HOME/que-core/pgdata`` (``~/.local/share/que-core/pgdata``)."""
    if os.environ.get(ENV_DATA_DIR):
        return Path(os.environ[ENV_DATA_DIR])
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "que-core" / "pgdata"


_servers: dict[Path, Any] = {}

_NO_PGSERVER = (
    "the embedded PostgreSQL needs pgserver (que-core's embedded extra), which has wheels "
    f"for Python 3.10 to 3.12 only (this is {sys.version_info[0]}.{sys.version_info[1]}): "
    "`pip install pgserver` with one of those, or give a DSN (--dsn, QUE_DSN or "
    "DATABASE_URL) instead"
)


def start(data_dir: Path | None = None, *, keep_running: bool = True) -> str:
    """Start (or reuse) the embedded server; return a DSN for its ``postgres`` database.

    With *keep_running* the server outlives this process and the next run
    reuses it; otherwise it stops when this process exits.
    """
    # pgserver logs each command it runs at INFO, and platformdirs warns when
    # XDG_RUNTIME_DIR is unset: noise around the one line the caller prints.
    logging.getLogger("pgserver").setLevel(logging.WARNING)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
        try:
            import pgserver
        except ImportError:
            raise ConfigurationError(_NO_PGSERVER) from None
        path = (data_dir or default_data_dir()).resolve()
        path.mkdir(parents=True, exist_ok=True)
        if path not in _servers:
            _servers[path] = pgserver.get_server(  # type: ignore[attr-defined]
                path, cleanup_mode=None if keep_running else "stop"
            )
    return str(_servers[path].get_uri())


def stop(data_dir: Path | None = None) -> None:
    """Stop the embedded server started by this process from *data_dir*."""
    path = (data_dir or default_data_dir()).resolve()
    server = _servers.pop(path, None)
    if server is not None:
        server.cleanup()
