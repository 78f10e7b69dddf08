"""README.md's code blocks, run in order as a new user would: in a fresh
virtualenv (its install commands install que-core into it, from a copy of
this checkout, as from a clone), in one scratch directory, against a fresh
database.

The README's example DSNs stand for the reader's own databases: the one
named ``myapp`` for the test's fresh database (created empty here, dropped
afterwards), the server's ``postgres`` database for the test server. A block
is skipped only with a reason written next to it in the README (see
tests/readme_blocks.py for the directives); a new block runs without any
change here."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv
from collections.abc import Iterator
from pathlib import Path

import pytest

from que_core import plugins
from que_core.testing import databases

ROOT = Path(__file__).resolve().parent.parent
RUNNER = Path(__file__).resolve().parent / "readme_blocks.py"
#: What the README writes for "your database" and "your server".
README_DATABASE = "postgresql://postgres@127.0.0.1:5432/myapp"
README_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"


@pytest.fixture
def fresh_database(server_dsn: str) -> Iterator[str]:
    if "psycopg" not in plugins.adapters():
        pytest.skip("the README's examples use psycopg 3: its adapter is not installed")
    with databases.temporary_database(plugins.get_adapter("psycopg"), server_dsn) as dsn:
        yield dsn


def clone(target: Path) -> Path:
    """The checkout's files as a clone has them (with uncommitted changes, without
    ignored files), so that ``pip install .`` builds there, not in this tree."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, check=True, timeout=60,
    ).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_readme_blocks_run_in_order(tmp_path: Path, fresh_database: str, server_dsn: str) -> None:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs the git checkout, to copy it as a clone")
    repo = clone(tmp_path / "que-core")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    bin_dir = env_dir / ("Scripts" if os.name == "nt" else "bin")
    env = {
        k: v for k, v in os.environ.items()
        if not (k.startswith("QUE_") or k in ("DATABASE_URL", "PYTHONPATH", "PYTHONHOME"))
    }
    env.update(
        PATH=os.pathsep.join([str(bin_dir), env.get("PATH", "")]),
        VIRTUAL_ENV=str(env_dir),
        DATABASE_URL=fresh_database,
        PYTHONUNBUFFERED="1",
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        PIP_NO_INPUT="1",
    )
    replace = {README_DATABASE: fresh_database, README_SERVER: server_dsn}
    out = subprocess.run(
        [str(bin_dir / "python"), str(RUNNER), str(repo / "README.md"), "--scratch",
         str(scratch), "--repo", str(repo), "--replace", json.dumps(replace)],
        cwd=scratch, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
        timeout=850,
    )
    lines = out.stdout.splitlines()
    report = next((json.loads(line.split(" ", 1)[1]) for line in reversed(lines)
                   if line.startswith("README-BLOCKS ")), None)
    tail = "\n".join(lines[-80:]) + "\n" + out.stderr[-3000:]
    assert report is not None, tail
    assert report["failed"] is None, tail
    assert out.returncode == 0, tail
    # Every block ran, was shown (output, config) or was skipped saying why.
    seen = len(report["ran"]) + len(report["shown"]) + len(report["skipped"])
    assert seen == report["blocks"], report
    assert all(s["reason"] for s in report["skipped"])
    sys.stdout.write(out.stdout)  # shown with -s or on failure: what each block printed
