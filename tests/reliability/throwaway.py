"""A throwaway PostgreSQL server that a test may restart: ``initdb`` into a
temporary directory, on a free port, run as an unprivileged user when the
tests run as root. Never the shared server the rest of the suite uses.

Binaries: the newest ``/usr/lib/postgresql/*/bin``, else ``pg_config
--bindir``, else the ones bundled in the pgserver wheel.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from conformance.fixtures import free_port


def find_bindir() -> Path | None:
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0,
        reverse=True,
    )
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True,
                             timeout=10)
        if out.returncode == 0:
            candidates.append(out.stdout.strip())
    with contextlib.suppress(ImportError):
        import pgserver

        candidates.append(str(Path(pgserver.__file__).parent / "pginstall" / "bin"))
    for c in candidates:
        if (Path(c) / "initdb").exists() and (Path(c) / "pg_ctl").exists():
            return Path(c)
    return None


class ThrowawayServer:
    def __init__(self) -> None:
        bindir = find_bindir()
        if bindir is None:
            raise RuntimeError("no PostgreSQL binaries (initdb, pg_ctl) found")
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="que_rel_pg_"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = free_port()
        self.user: pwd.struct_passwd | None = None
        if os.geteuid() == 0:  # initdb and postgres refuse to run as root
            for name in ("postgres", "pgserver"):
                with contextlib.suppress(KeyError):
                    self.user = pwd.getpwnam(name)
                    break
            if self.user is None:
                raise RuntimeError("running as root and no 'postgres' user to run a server as")
            os.chown(self.root, self.user.pw_uid, self.user.pw_gid)
        self.options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} "
            "-c fsync=off -c full_page_writes=off -c max_connections=200"
        )
        self.dsn = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self.restarts = 0
        self._run(self.bindir / "initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust",
                  "-E", "UTF8", "--no-sync")
        self._pg_ctl("start")

    def _run(self, *cmd: Any, timeout: float = 120) -> None:
        user = self.user

        def demote() -> None:
            if user is not None:
                os.setgid(user.pw_gid)
                os.setuid(user.pw_uid)

        env = dict(os.environ, LC_ALL="C.UTF-8", LANG="C.UTF-8")
        if user is not None:
            env["HOME"] = user.pw_dir
        out = subprocess.run([str(c) for c in cmd], preexec_fn=demote, env=env, cwd=self.root,
                             capture_output=True, text=True, timeout=timeout)
        if out.returncode != 0:
            raise RuntimeError(f"{cmd[0]} failed: {out.stdout}\n{out.stderr}\n{self.log_tail()}")

    def _pg_ctl(self, action: str, mode: str = "fast", wait: int = 60) -> None:
        self._run(self.bindir / "pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w",
                  "-t", str(wait), "-m", mode, "-o", self.options, action, timeout=wait + 60)

    def restart(self, mode: str = "fast") -> str:
        """Stop the server (``fast``: sessions terminated; ``immediate``: a
        crash, with recovery at start) and start it again; the mode it was
        stopped in. A fast stop that has not ended in 120 s (seen once on a
        loaded machine) becomes an immediate one, with a warning and the log."""
        try:
            self._pg_ctl("stop", mode, wait=120)
        except RuntimeError as exc:
            if mode == "immediate":
                raise
            warnings.warn(f"pg_ctl stop -m {mode} did not end: stopping -m immediate. {exc}",
                          stacklevel=2)
            self._pg_ctl("stop", "immediate")
            mode = f"immediate ({mode} timed out)"
        self._pg_ctl("start")
        self.restarts += 1
        return mode

    def running(self) -> bool:
        """Whether the postmaster is up (``pg_ctl status``)."""
        try:
            self._run(self.bindir / "pg_ctl", "-D", str(self.data), "status", timeout=30)
        except RuntimeError:
            return False
        return True

    def ensure_running(self) -> str | None:
        """Start the server if it is down; the log's tail when it was (why it
        went is there, if anywhere), else None."""
        if self.running():
            return None
        tail = self.log_tail()
        self._pg_ctl("start")
        return tail

    def wait_ready(self, connect: Any, timeout: float = 60) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            try:
                return connect()
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def log_tail(self, n: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        return ""

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._pg_ctl("stop", "immediate")
        shutil.rmtree(self.root, ignore_errors=True)
