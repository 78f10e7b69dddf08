"""An embedded PostgreSQL for development and tests, from the pgserver wheel.

pgserver ships PostgreSQL binaries inside a PyPI wheel, so a machine with only
Python gets a real server without a system install or Docker. It runs as the
current user (as root, as its own user ``pgserver``) and listens only on a
Unix socket, with trust authentication: whoever reaches the socket is its
superuser. So the socket must be reachable by its owner alone:

- it lives in the data directory (mode 0700); when that path is too long for
  a socket, in a private directory of this user's (``$XDG_RUNTIME_DIR/que-core``
  or ``/tmp/que-core-<uid>``, 0700), not pgserver's shared runtime directory;
- as root, que-core never lets pgserver chmod or chown a directory it did not
  create: the data directory must be new (or the ``pgserver`` user's), every
  directory above it and above the binaries already open to other users, and
  the path short enough for the socket. The default as root is
  :data:`ROOT_DATA_DIR`, which needs neither.

Otherwise :func:`start` refuses, saying why, and starts nothing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

from que_core.errors import ConfigurationError, QueError

ENV_DATA_DIR = "QUE_EMBEDDED_DIR"
#: The default data directory as root: a home directory (0700) would have to
#: be opened to the ``pgserver`` user; /var/lib already is.
ROOT_DATA_DIR = Path("/var/lib/que-core/pgdata")
SERVER_USER = "pgserver"  # pgserver's own, when run as root
_SOCKET = ".s.PGSQL.5432"
_SUN_PATH = 104 if sys.platform == "darwin" else 108  # bytes, the NUL included
_OPEN = stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH  # what pgserver adds


def _root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def default_data_dir() -> Path:
    """Where the embedded server keeps its data: ``$QUE_EMBEDDED_DIR``, else
    ``$XDG_DATA_HOME/que-core/pgdata`` (``~/.local/share/que-core/pgdata``);
    as root :data:`ROOT_DATA_DIR`."""
    if os.environ.get(ENV_DATA_DIR):
        return Path(os.environ[ENV_DATA_DIR])
    if _root():
        return ROOT_DATA_DIR
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
    reuses it; otherwise it stops when this process exits. Raises
    :class:`~que_core.errors.ConfigurationError`, starting nothing, where its
    socket would be reachable by other users or where pgserver would change
    the permissions of a directory que-core did not create.
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
        if path not in _servers:
            runtime = _prepare(path)
            try:
                server = _get_server(pgserver, path, None if keep_running else "stop", runtime)
            except (subprocess.SubprocessError, OSError, RuntimeError, AssertionError) as exc:
                raise QueError(
                    f"the embedded PostgreSQL in {path} did not start: {exc} (its log: "
                    f"{path / 'log'})"
                ) from None
            _check_socket(server, path)
            _servers[path] = server
    return str(_servers[path].get_uri())


def stop(data_dir: Path | None = None) -> None:
    """Stop the embedded server started by this process from *data_dir*."""
    path = (data_dir or default_data_dir()).resolve()
    server = _servers.pop(path, None)
    if server is not None:
        server.cleanup()


def _prepare(path: Path) -> Path | None:
    """Create the data directory *path* and check where its socket will be;
    the private directory for the socket when *path* is too long for one."""
    if os.name != "posix":
        path.mkdir(parents=True, exist_ok=True)
        return None
    fits = len(os.fsencode(path / _SOCKET)) < _SUN_PATH
    if _root():
        _check_root_layout(path, fits)  # before creating anything
        if not _make_dirs(path):
            _check_root_owner(path)
        return None
    _make_dirs(path)
    return None if fits else _private_runtime_dir()


def _get_server(pgserver: Any, path: Path, cleanup_mode: str | None, runtime: Path | None) -> Any:
    if runtime is None:
        return pgserver.get_server(path, cleanup_mode=cleanup_mode)
    # pgserver puts a socket that does not fit in the data directory in its
    # runtime directory, shared and open to all: give it a private one.
    base = pgserver.PostgresServer
    if path in base._instances:
        return base._instances[path]
    server_class = type("PrivateSocketServer", (base,), {"runtime_path": runtime})
    return server_class(path, cleanup_mode=cleanup_mode)


def _make_dirs(path: Path) -> bool:
    """Create *path* (0700) and its missing parents; whether this call made
    *path*. As root the new parents are 0755, for the ``pgserver`` user."""
    created = False
    for directory in reversed([path, *path.parents]):
        try:
            directory.mkdir(mode=0o700 if directory == path else 0o755)
        except FileExistsError:
            continue
        except OSError as exc:
            raise ConfigurationError(f"cannot create the embedded PostgreSQL's {directory}: "
                                     f"{exc.strerror}") from None
        if directory == path:
            created = True
        elif _root():
            directory.chmod(0o755)  # whatever the umask: one of ours
    return created


def _private_runtime_dir() -> Path:
    """This user's own directory for a socket (0700, created if missing):
    ``$XDG_RUNTIME_DIR/que-core``, else ``<tempdir>/que-core-<uid>``. Refused
    when someone else made it or may enter it."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    base = Path(runtime) / "que-core" if runtime else Path(
        tempfile.gettempdir()) / f"que-core-{os.geteuid()}"
    with contextlib.suppress(FileExistsError):
        base.mkdir(mode=0o700)
    st = os.lstat(base)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
        raise ConfigurationError(
            f"{base} (for the embedded PostgreSQL's socket, the data directory's path being too "
            f"long for one) is not private: it must be a directory of yours with mode 0700 "
            f"(it is {_describe(base, st)}). Remove it, or choose a shorter --embedded-dir."
        )
    return base


def _check_root_layout(path: Path, fits: bool) -> None:
    """As root pgserver chowns the data directory to its user, adds r-x for
    group and others to every directory above it and above its binaries, and
    opens a socket directory outside the data directory to all (0777).
    Refuse wherever that would change something que-core did not create."""
    import pgserver

    if not fits:
        raise ConfigurationError(
            f"refusing to start the embedded PostgreSQL in {path}: the path is too long for "
            f"its socket ({len(os.fsencode(path / _SOCKET))} bytes with {_SOCKET}, at most "
            f"{_SUN_PATH - 1}), and as root pgserver would put the socket in a directory "
            f"open to every user. Choose a shorter --embedded-dir."
        )
    binaries = Path(pgserver.__file__).parent / "pginstall" / "bin"
    for directory in (*path.parents, *binaries.parents):
        if directory.exists() and (directory.stat().st_mode & _OPEN) != _OPEN:
            raise ConfigurationError(
                f"refusing to start the embedded PostgreSQL in {path}: {directory} is "
                f"{_describe(directory)}, and as root the server runs as the user "
                f"{SERVER_USER}, so pgserver would open it to every user (chmod go+rx). Use "
                f"a data directory under directories others may already enter (the default "
                f"as root is {ROOT_DATA_DIR})."
            )
    for top, need in ((binaries, _OPEN), (binaries.parent / "lib", stat.S_IRGRP | stat.S_IROTH)):
        for root, _, files in os.walk(top):
            items = [(Path(root), _OPEN)] + [(Path(root, f), need) for f in files]
            for item, bits in items:
                if (item.stat().st_mode & bits) != bits:
                    raise ConfigurationError(
                        f"refusing to start the embedded PostgreSQL: {item} is not readable "
                        f"by other users, and as root the server runs as the user "
                        f"{SERVER_USER} (pgserver would chmod it). Reinstall pgserver with "
                        f"umask 022."
                    )
    if path.exists():
        _check_root_owner(path)


def _check_root_owner(path: Path) -> None:
    """A data directory que-core did not create must be the server user's:
    pgserver chowns it to that user."""
    import pwd

    try:
        server_uid: int | None = pwd.getpwnam(SERVER_USER).pw_uid
    except KeyError:
        server_uid = None  # pgserver creates the user: it owns nothing yet
    if os.stat(path).st_uid != server_uid:
        raise ConfigurationError(
            f"refusing to start the embedded PostgreSQL in {path}: it exists and is "
            f"{_describe(path)}; as root the server runs as the user {SERVER_USER}, and "
            f"pgserver would chown the directory to it. Give a new directory (que-core "
            f"creates it), or one {SERVER_USER} owns."
        )


def _check_socket(server: Any, path: Path) -> None:
    """Refuse a server whose socket other users can reach (with trust
    authentication, they would be its superuser), e.g. one started from
    this data directory by an older que-core."""
    if os.name != "posix":
        return
    info = server.get_postmaster_info()
    owner = os.stat(path).st_uid
    problem = None
    if info.socket_dir is None or info.hostname:
        problem = f"it listens on TCP ({info.hostname}:{info.port})"
    elif not _private(Path(info.socket_dir), owner):
        problem = f"its socket is in {info.socket_dir}, which other users can reach"
    if problem:
        raise ConfigurationError(
            f"refusing the embedded PostgreSQL running from {path}: {problem}, and anyone "
            f"who connects is its superuser. Stop it (pg_ctl -D {path} stop, as the user "
            f"it runs as) and start again."
        )


def _private(directory: Path, owner: int) -> bool:
    """Whether only *owner* (and root) can reach *directory*: it, or a
    directory above it, is *owner*'s with no access for group or others,
    and every directory between is *owner*'s too."""
    for d in (directory, *directory.parents):
        st = os.lstat(d)
        if st.st_uid != owner or stat.S_ISLNK(st.st_mode):
            return False
        if not st.st_mode & 0o077:
            return True
    return False


def _describe(path: Path, st: os.stat_result | None = None) -> str:
    st = st or os.stat(path)
    try:
        import pwd

        owner = pwd.getpwuid(st.st_uid).pw_name
    except (ImportError, KeyError):
        owner = f"uid {st.st_uid}"
    return f"owned by {owner}, mode {stat.S_IMODE(st.st_mode):04o}"
