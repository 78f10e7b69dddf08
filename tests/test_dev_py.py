"""dev.py under Python 3.13, for which pgserver has no wheel: .venv is made
with a Python 3.10-3.12 when one is found (and the embedded demo works), else
with 3.13 and everything but pgserver (and the demo asks for a DSN).

Each case builds a .venv in a copy of the repository (pip, about a minute
each); skipped when no Python 3.13 is installed (pyenv has one here)."""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PYENV = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv") / "versions"


def _works(python: str) -> bool:
    try:
        out = subprocess.run([python, "-c", "import sys; print(sys.version_info[:2])"],
                             capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return False
    return out.returncode == 0


def _find(minor: int) -> str | None:
    candidates = [shutil.which(f"python3.{minor}") or ""]
    candidates += sorted(glob.glob(str(PYENV / f"3.{minor}.*" / "bin" / f"python3.{minor}")),
                         reverse=True)
    return next((c for c in candidates if c and _works(c)), None)


PY313 = _find(13)
PY312 = _find(12)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(900),
    pytest.mark.skipif(PY313 is None, reason="no Python 3.13 installed (on PATH or in pyenv)"),
]


@pytest.fixture
def checkout() -> Iterator[Path]:
    """What dev.py installs from, copied (not the .venv, caches or build files)."""
    path = Path(tempfile.gettempdir()) / f"que-devpy-{uuid.uuid4().hex[:10]}"
    ignore = shutil.ignore_patterns(".venv", "__pycache__", "*.egg-info", "build", ".tox")
    path.mkdir()
    for name in ("dev.py", "pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, path / name)
    for name in ("que_core", "que_adapters", "conformance"):
        shutil.copytree(ROOT / name, path / name, ignore=ignore)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _env(path: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not (k.startswith("QUE_") or k in ("DATABASE_URL", "VIRTUAL_ENV", "PYTHONPATH"))}
    # PIP_NO_COMPILE: no .pyc compiling of the ~50 packages pip installs (not
    # what these tests are about; Python compiles what the demo imports).
    env.update(PATH=path, PYENV_ROOT="/nonexistent", PIP_NO_COMPILE="1", **extra)
    return env


def _dev(checkout: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    assert PY313 is not None
    return subprocess.run([PY313, "dev.py", *args], cwd=checkout, env=env,
                          capture_output=True, text=True, timeout=800, stdin=subprocess.DEVNULL)


def _venv(checkout: Path) -> tuple[str, dict[str, object]]:
    version = subprocess.run([str(checkout / ".venv/bin/python"), "-c",
                              "import sys; print('%d.%d' % sys.version_info[:2])"],
                             capture_output=True, text=True, timeout=60).stdout.strip()
    stamp = json.loads((checkout / ".venv/que-dev-stamp.json").read_text())
    return version, stamp


@pytest.mark.skipif(PY312 is None, reason="no Python 3.12 installed to fall back to")
def test_python313_makes_the_venv_with_a_python312_from_path(checkout: Path) -> None:
    assert PY312 is not None
    bin_dir = checkout / "bin"  # only python3.12 among the fallbacks
    bin_dir.mkdir()
    (bin_dir / "python3.12").symlink_to(PY312)
    data = Path(tempfile.gettempdir()) / f"que-devpy-pgdata-{uuid.uuid4().hex[:10]}"
    env = _env(f"{bin_dir}:/usr/sbin:/usr/bin:/sbin:/bin", QUE_EMBEDDED_DIR=str(data))
    try:
        out = _dev(checkout, env, "demo", "--jobs", "20", "--workers", "2")
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
        assert ("pgserver (the embedded PostgreSQL) has no wheel for Python 3.13: making "
                f".venv with {bin_dir / 'python3.12'} instead") in out.stderr
        version, stamp = _venv(checkout)
        assert version == "3.12"
        assert stamp["embedded"] is True
        assert "embedded PostgreSQL (pgserver)" in out.stdout and "summary" in out.stdout
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run([str(checkout / ".venv/bin/python"), "-c",
                            "import pgserver, sys; "
                            "pgserver.get_server(sys.argv[1], cleanup_mode='stop').cleanup()",
                            str(data)], capture_output=True, timeout=120)
        shutil.rmtree(data, ignore_errors=True)


def test_python313_without_an_older_python_installs_all_but_pgserver(
    checkout: Path, server_dsn: str
) -> None:
    empty = checkout / "no-pythons"
    empty.mkdir()
    out = _dev(checkout, _env(str(empty)), "demo", "--jobs", "20", "--workers", "2")
    assert out.returncode != 0
    assert ("pgserver (the embedded PostgreSQL) has no wheel for Python 3.13, and no "
            "python3.12, python3.11, python3.10 was found on PATH or in pyenv") in out.stderr
    assert "the embedded PostgreSQL is not installed in .venv" in out.stderr
    assert "set DATABASE_URL to a PostgreSQL server" in out.stderr
    assert "que-core[embedded]" not in out.stdout + out.stderr  # advice that cannot work
    version, stamp = _venv(checkout)
    assert version == "3.13"
    assert stamp["embedded"] is False
    # With a server, the same venv runs the demo.
    out = _dev(checkout, _env(str(empty), DATABASE_URL=server_dsn),
               "demo", "--jobs", "20", "--workers", "2")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "summary" in out.stdout
    assert "installing" not in out.stderr  # nothing changed: no second install
