#!/usr/bin/env python3
"""One command for each development task, on a machine that has only Python.

    python3 dev.py demo [que demo options: --jobs N --workers N --dsn DSN ...]
    python3 dev.py test [pytest arguments]
    python3 dev.py lint [ruff check arguments]

Each command first makes sure ``.venv`` (in this directory) exists and holds
que-core and every adapter in this repository, installed in editable mode with
the test extras; it installs again only when a pyproject.toml changed since
the last install (a hash is kept in ``.venv/que-dev-stamp.json``). Then it runs
the command with the venv's Python.

Without a DSN the demo and the tests start an embedded PostgreSQL (the
pgserver wheel); ``DATABASE_URL`` (demo) or ``QUE_TEST_DSN`` (tests) point
them at a server of your own instead.

Standard library only. The file parses on Python 3.6+ so that an old
interpreter gets the message below instead of a syntax error.
"""

import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time

MIN_PYTHON = (3, 10)

if sys.version_info < MIN_PYTHON:
    found = sys.version.split()[0]
    sys.stderr.write(
        f"dev.py needs Python {MIN_PYTHON[0]}.{MIN_PYTHON[1]} or newer; this is Python {found}"
        f" ({sys.executable}).\nRun it with a newer one, e.g. `python3.12 dev.py ...`.\n"
    )
    sys.exit(2)

ROOT = os.path.dirname(os.path.abspath(__file__))
VENV = os.path.join(ROOT, ".venv")
STAMP = os.path.join(VENV, "que-dev-stamp.json")
INSTALL_LOG = os.path.join(VENV, "que-dev-install.log")
WINDOWS = os.name == "nt"

# Adapter packages under que_adapters/, each installed when its pyproject.toml
# exists, with these extras.
ADAPTERS = {"psycopg": "[binary]", "psycopg2": "", "pg8000": "", "asyncpg": ""}
# que-core's extras per dev.py purpose. Every venv gets "test": the demo needs
# pgserver from it, and mypy the test libraries' types.
CORE_EXTRAS = {"test": "test", "lint": "lint"}
# pgserver (the embedded PostgreSQL) has wheels for CPython 3.10 to 3.12 only,
# as the marker on it in pyproject.toml says; from this version on, .venv is
# made with an older interpreter when there is one.
NO_PGSERVER_FROM = (3, 13)
# Interpreters to try for .venv then: these names on PATH, then pyenv's.
OLDER_PYTHONS = ("python3.12", "python3.11", "python3.10")
NO_EMBEDDED = (
    "the embedded PostgreSQL is not installed in .venv (pgserver has no wheel for its "
    "Python): set {var} to a PostgreSQL server, e.g. "
    "{var}=postgresql://postgres@127.0.0.1:5432/postgres, or make .venv again with "
    "Python 3.10-3.12 (rm -rf .venv; python3.12 dev.py ...)"
)


def say(message):
    print("dev.py: " + message, file=sys.stderr, flush=True)


def venv_python():
    if WINDOWS:
        return os.path.join(VENV, "Scripts", "python.exe")
    return os.path.join(VENV, "bin", "python")


def python_ok(python):
    """Whether *python* runs and is 3.10 or newer."""
    try:
        out = subprocess.run(
            [python, "-c", "import sys; print(sys.version_info >= (3, 10))"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
            timeout=60,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return out.returncode == 0 and out.stdout.strip() == b"True"


def pyproject_files():
    files = [os.path.join(ROOT, "pyproject.toml")]
    for name in sorted(ADAPTERS):
        path = os.path.join(ROOT, "que_adapters", name, "pyproject.toml")
        if os.path.isfile(path):
            files.append(path)
    return files


def install_hash():
    digest = hashlib.sha256()
    digest.update(json.dumps([ADAPTERS, CORE_EXTRAS], sort_keys=True).encode())
    for path in pyproject_files():
        digest.update(os.path.relpath(path, ROOT).encode() + b"\0")
        with open(path, "rb") as f:
            digest.update(f.read())
        digest.update(b"\0")
    return digest.hexdigest()


def read_stamp():
    try:
        with open(STAMP, encoding="utf-8") as f:
            stamp = json.load(f)
    except (OSError, ValueError):
        return None
    return stamp if isinstance(stamp, dict) else None


def create_venv(python):
    if os.path.exists(VENV):
        shutil.rmtree(VENV)
    version = subprocess.run(
        [python, "-c", "import sys; print(sys.version.split()[0])"],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    ).stdout.decode().strip()
    say(f"creating .venv with {python} (Python {version})")
    result = subprocess.run(
        [python, "-m", "venv", VENV],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    if result.returncode != 0:
        sys.stderr.write(result.stdout.decode(errors="replace"))
        shutil.rmtree(VENV, ignore_errors=True)
        sys.exit(
            f"dev.py: `{python} -m venv .venv` failed (output above). On Debian or Ubuntu "
            "the venv module is a package of its own: apt-get install python3-venv"
        )


def core_extras(purposes):
    return sorted({CORE_EXTRAS[p] for p in purposes if p in CORE_EXTRAS})


def requirement_name(req):
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", req)
    return re.sub(r"[-_.]+", "-", match.group(1)).lower() if match else ""


def requirements(purposes, embedded=True):
    """pip install arguments: que-core with its extras, and the adapters."""
    extras = core_extras(purposes)
    if embedded:
        args = ["-e", "." + ("[" + ",".join(extras) + "]" if extras else "")]
    else:
        # The same extras' requirements, less pgserver (tomllib: Python 3.11+,
        # which is where this is needed).
        import tomllib

        with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
            optional = tomllib.load(f)["project"].get("optional-dependencies", {})
        args = ["-e", "."]
        for extra in extras:
            args += [r for r in optional.get(extra, []) if requirement_name(r) != "pgserver"]
    for name in sorted(ADAPTERS):
        if os.path.isfile(os.path.join(ROOT, "que_adapters", name, "pyproject.toml")):
            args += ["-e", "./que_adapters/" + name + ADAPTERS[name]]
    return args


def pip_install(args):
    """Run pip install *args* in .venv, its output in the install log; True on success."""
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
    with open(INSTALL_LOG, "ab") as log:
        log.write(("\n$ pip install " + " ".join(args) + "\n").encode())
        log.flush()
        result = subprocess.run(
            [venv_python(), "-m", "pip", "install", *args],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    return result.returncode == 0


def install_log():
    with open(INSTALL_LOG, encoding="utf-8", errors="replace") as f:
        return f.read()


def pgserver_missing():
    """Whether the last install failed for want of a pgserver wheel."""
    text = install_log()
    last = text[text.rfind("\n$ pip install") :]
    return bool(re.search(r"No matching distribution found for pgserver", last))


def older_python():
    """A Python 3.10-3.12 to make .venv with: on PATH, else one pyenv installed
    ($PYENV_ROOT/versions/*/bin, newest first); None when there is none."""
    for name in OLDER_PYTHONS:
        path = shutil.which(name)
        if path and python_ok(path):
            return path
    root = os.environ.get("PYENV_ROOT") or os.path.join(os.path.expanduser("~"), ".pyenv")
    versions = os.path.join(root, "versions")
    found = []
    with contextlib.suppress(OSError):
        for entry in os.listdir(versions):
            match = re.match(r"3\.(\d+)\.(\d+)$", entry)
            if match and (3, int(match.group(1))) < NO_PGSERVER_FROM:
                found.append(((int(match.group(1)), int(match.group(2))), entry))
    for _version, entry in sorted(found, reverse=True):
        minor = entry.rsplit(".", 1)[0]
        path = os.path.join(versions, entry, "bin", "python" + minor)
        if os.path.isfile(path) and python_ok(path):
            return path
    return None


def has_pgserver():
    """Whether .venv's Python can import pgserver."""
    result = subprocess.run(
        [venv_python(), "-c", "import importlib.util as u, sys; "
         "sys.exit(u.find_spec('pgserver') is None)"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    return result.returncode == 0


def python_for_venv():
    """This Python, or an older one when pgserver has no wheel for this one."""
    if sys.version_info[:2] < NO_PGSERVER_FROM:
        return sys.executable
    version = ".".join(map(str, sys.version_info[:2]))
    other = older_python()
    if other:
        say(f"pgserver (the embedded PostgreSQL) has no wheel for Python {version}: "
            f"making .venv with {other} instead")
        return other
    say(
        f"pgserver (the embedded PostgreSQL) has no wheel for Python {version}, and no "
        f"{', '.join(OLDER_PYTHONS)} was found on PATH or in pyenv: .venv gets everything "
        "but pgserver, and the demo and the tests will need a DSN"
    )
    return sys.executable


def ensure_installed(purpose):
    """Create or reuse .venv and install into it if anything changed; return
    the stamp (what is installed)."""
    created = False
    if not python_ok(venv_python()):
        if os.path.exists(VENV):
            say(".venv does not work (moved, or its Python is gone): making it again")
        create_venv(python_for_venv())
        created = True
    wanted_hash = install_hash()
    stamp = None if created else read_stamp()
    purposes = {"test", purpose}
    if stamp and stamp.get("hash") == wanted_hash and purposes <= set(stamp.get("purposes", [])):
        return stamp
    if stamp:
        purposes |= set(stamp.get("purposes", []))  # keep what the venv already served
    purposes = sorted(purposes)
    with contextlib.suppress(OSError):
        os.remove(STAMP)
    with contextlib.suppress(OSError):
        os.remove(INSTALL_LOG)
    log_name = os.path.relpath(INSTALL_LOG, ROOT)
    say(f"installing que-core and the adapters into .venv ({', '.join(purposes)}; log: {log_name})")
    started = time.monotonic()
    args = requirements(purposes)
    ok = pip_install(args)
    if not ok and pgserver_missing():  # a platform without pgserver wheels
        version = ".".join(map(str, sys.version_info[:2]))
        other = older_python()
        if other:
            say(f"pgserver has no wheel for Python {version}; making .venv with {other} instead")
            create_venv(other)
            ok = pip_install(args)
        else:
            say(
                f"pgserver (the embedded PostgreSQL) has no wheel for Python {version}: "
                "installing everything else; the demo and the tests will need a DSN"
            )
            args = requirements(purposes, embedded=False)
            ok = pip_install(args)
    if not ok:
        sys.stderr.write(install_log())
        sys.exit(f"dev.py: pip install failed (output above, also in {log_name})")
    stamp = {"hash": wanted_hash, "purposes": purposes, "embedded": has_pgserver(), "args": args}
    with open(STAMP, "w", encoding="utf-8") as f:
        json.dump(stamp, f, indent=1)
    say(f"installed in {time.monotonic() - started:.0f} s")
    return stamp


def pytest_testpaths():
    """``testpaths`` of [tool.pytest.ini_options] in pyproject.toml (a small
    parser for that one key: tomllib is Python 3.11+)."""
    with open(os.path.join(ROOT, "pyproject.toml"), encoding="utf-8") as f:
        text = f.read()
    section = re.search(r"^\[tool\.pytest\.ini_options\]\s*$(.*?)(?=^\[|\Z)", text, re.M | re.S)
    if not section:
        return []
    value = re.search(r"^testpaths\s*=\s*\[(.*?)\]", section.group(1), re.M | re.S)
    if not value:
        return []
    return re.findall(r"""["']([^"']+)["']""", value.group(1))


def default_test_paths():
    """The pyproject's testpaths plus each adapter's own tests directory."""
    paths = []
    for path in pytest_testpaths():
        if os.path.exists(os.path.join(ROOT, path)) and path not in paths:
            paths.append(path)
    for name in sorted(ADAPTERS):
        tests = "que_adapters/" + name + "/tests"
        if os.path.isdir(os.path.join(ROOT, tests)) and tests not in paths:
            paths.append(tests)
    return paths


def names_a_path(args):
    """Whether a pytest argument selects tests by path (then pytest gets only
    what was asked for)."""
    for arg in args:
        if arg.startswith("-"):
            continue
        if os.path.exists(os.path.join(ROOT, arg.split("::")[0])):
            return True
    return False


def run(argv):
    """Replace this process with *argv*, run in the repository."""
    os.chdir(ROOT)
    sys.stdout.flush()
    sys.stderr.flush()
    if WINDOWS:
        try:
            sys.exit(subprocess.call(argv))
        except KeyboardInterrupt:
            sys.exit(130)
    os.execv(argv[0], argv)


def cmd_demo(args):
    stamp = ensure_installed("test")
    if not stamp.get("embedded", True) and not (
        os.environ.get("DATABASE_URL") or os.environ.get("QUE_DSN") or "--dsn" in args
    ):
        sys.exit("dev.py: " + NO_EMBEDDED.format(var="DATABASE_URL"))
    run([venv_python(), "-m", "que_core.cli", "demo", *args])


def cmd_test(args):
    stamp = ensure_installed("test")
    dsn = os.environ.get("QUE_TEST_DSN") or os.environ.get("DATABASE_URL")
    if not stamp.get("embedded", True) and not dsn:
        sys.exit("dev.py: " + NO_EMBEDDED.format(var="QUE_TEST_DSN"))
    whole = not names_a_path(args)
    paths = default_test_paths() if whole else []
    workers = xdist_workers(args) if whole else 0
    say(
        "testing against "
        + ("the server of $QUE_TEST_DSN/$DATABASE_URL" if dsn else "the embedded PostgreSQL")
        + (f", on {workers} pytest-xdist workers (-n 0: one process)" if workers else "")
    )
    if workers and not dsn:
        # One embedded server for every worker, started here: not a race of
        # the workers to start it.
        os.environ["QUE_TEST_DSN"] = subprocess.check_output(
            [venv_python(), "-c", "from que_core import embedded; print(embedded.start())"],
            text=True).strip()
    run([venv_python(), "-m", "pytest", *paths, *(["-n", str(workers)] if workers else []), *args])


def xdist_workers(args):
    """How many pytest-xdist processes run the whole suite: one a core, at
    most 4 (each holds a few sessions at once); none when *args* say how
    (-n, --numprocesses, --dist, -p no:xdist), where a debugger needs the
    terminal (--pdb, --trace), or on one core."""
    for i, arg in enumerate(args):
        if (arg.startswith(("-n", "--numprocesses", "--dist", "--pdb", "--trace"))
                or arg == "-pno:xdist" or (arg == "-p" and args[i + 1:i + 2] == ["no:xdist"])):
            return 0
    workers = min(os.cpu_count() or 1, 4)
    return workers if workers > 1 else 0


def cmd_lint(args):
    ensure_installed("lint")
    os.chdir(ROOT)
    bindir = os.path.dirname(venv_python())
    status = 0
    for tool in (["ruff", "check", *args], ["mypy"]):
        say("running " + " ".join(tool))
        code = subprocess.call([os.path.join(bindir, tool[0]), *tool[1:]])
        status = status or code
    sys.exit(status)


COMMANDS = {"demo": cmd_demo, "test": cmd_test, "lint": cmd_lint}


def main(argv):
    if not argv or argv[0] not in COMMANDS:
        sys.stderr.write(__doc__.split("\n\n")[1] + "\n")
        sys.exit(0 if argv and argv[0] in ("-h", "--help", "help") else 2)
    COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
    main(sys.argv[1:])
