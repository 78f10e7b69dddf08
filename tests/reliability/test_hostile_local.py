"""Hostile neighbours (issue 16, items 2-6 and 9): another local user, or
another program writing to the database, against the local tools.

Each test reproduces one attack as the issue describes it: the embedded
server's socket, code and settings planted in the current directory, task
paths and job names from forged rows, log and terminal forgery, secrets in
DSNs, and input that used to end in a raw traceback. Where the input space
is large the test is property-based (hypothesis)."""

from __future__ import annotations

import atexit
import json
import os
import re
import stat
import subprocess
import sys
import sysconfig
import tempfile
import unicodedata
from contextlib import closing
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from conformance.fixtures import scalar, wait_until
from que_core import Job, logs
from que_core.connection import Adapter, Connection
from que_core.dsn import MASK, mask_password, parse_dsn
from que_core.errors import CannotConnect, ConfigurationError, InvalidJob
from tests import django_support
from tests.helpers import job_count
from tests.reliability.harness import scaled
from tests.test_cli_admin import ROOT, clean_env, que

SETTINGS = settings(
    max_examples=scaled(60, 600),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    database=None,
)
# For properties that run `que` or a database round trip per example.
DB_SETTINGS = settings(SETTINGS, max_examples=scaled(20, 200))
ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: acts as two local users")


def _controls(text: str) -> list[str]:
    """The characters of *text* that move a terminal's cursor or end a line:
    C0 and C1 controls, DEL, U+2028 and U+2029 (tab aside)."""
    return [c for c in text if c != "\t" and unicodedata.category(c) in ("Cc", "Zl", "Zp")]


# -- 6. secrets in DSNs ----------------------------------------------------------------

# libpq's secret parameters ("*" in PQconndefaults) and its SCRAM keys.
SECRET_KEYS = ["oauth_client_secret", "password", "scram_client_key", "scram_server_key",
               "sslpassword"]
# What a secret may hold: anything but NUL and lone surrogates, DSN syntax most of all.
DSN_SYNTAX = ["@", ":", "'", "\\", " ", "/", "?", "&", "=", "%", "#", "://", "password="]
ANY_TEXT = st.lists(
    st.sampled_from(DSN_SYNTAX)
    | st.characters(exclude_categories=("Cs",), exclude_characters="\x00"),
    min_size=1, max_size=15,
).map("".join)
# Unencoded in a URL's user info: up to the first "/" or space ends the authority.
RAW_USERINFO = st.lists(
    st.sampled_from(["@", ":", "?", "&", "=", "%", "'", "@@"])
    | st.characters(exclude_categories=("Cs", "Zs", "Zl", "Zp", "Cc"), exclude_characters="/"),
    min_size=1, max_size=15,
).map("".join)


def _kv_quoted(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _kv_escaped(value: str) -> str:
    """libpq's unquoted form: a backslash before each space, quote or backslash."""
    return re.sub(r"([\\'\s])", r"\\\1", value)


@SETTINGS
@given(secret=ANY_TEXT, key=st.sampled_from(SECRET_KEYS), spaces=st.sampled_from(["", " "]),
       quoted=st.booleans())
def test_key_value_secrets_are_masked(secret: str, key: str, spaces: str, quoted: bool) -> None:
    value = _kv_quoted(secret) if quoted else _kv_escaped(secret)
    text = f"host=db {key}{spaces}={spaces}{value} dbname=app"
    assert parse_dsn(text)[key] == secret  # the DSN does carry that secret
    assert mask_password(f"cannot connect to {text}: refused") == (
        f"cannot connect to host=db {key}{spaces}={spaces}{MASK} dbname=app: refused")


@SETTINGS
@given(secret=ANY_TEXT, key=st.sampled_from(SECRET_KEYS), encode_key=st.booleans())
def test_query_string_secrets_are_masked(secret: str, key: str, encode_key: bool) -> None:
    shown_key = "".join(f"%{ord(c):02X}" if i == 1 else c for i, c in enumerate(key)) \
        if encode_key else key
    text = f"postgresql://app@db/app?sslmode=disable&{shown_key}={quote(secret, safe='')}&x=1"
    assert parse_dsn(text)[key] == secret
    assert mask_password(text) == (
        f"postgresql://app@db/app?sslmode=disable&{shown_key}={MASK}&x=1")


@SETTINGS
@given(secret=ANY_TEXT)
def test_url_passwords_are_masked_encoded(secret: str) -> None:
    text = f"postgresql://app:{quote(secret, safe='')}@db:5432/app"
    assert parse_dsn(text)["password"] == secret
    assert mask_password(f"at {text} now") == f"at postgresql://app:{MASK}@db:5432/app now"


@SETTINGS
@given(secret=RAW_USERINFO)
def test_url_passwords_are_masked_to_the_last_at_sign(secret: str) -> None:
    """An unencoded "@" (or ":", "?") in the password: masked whole, and
    refused by the DSN reader instead of being half sent as a host name."""
    text = f"postgresql://app:{secret}@db:5432/app"
    assert mask_password(f"at {text} now") == f"at postgresql://app:{MASK}@db:5432/app now"
    if "@" in secret:
        try:
            parse_dsn(text)
        except ConfigurationError as exc:  # nothing of the DSN is quoted
            message = str(exc)
            assert message.startswith("cannot read the DSN: ")
            assert "'" not in message.replace("'@'", ""), message
        else:  # an unencoded "?" ended the authority before the "@"s
            assert "?" in secret


SECRET_DSNS = [
    "host=127.0.0.1 port=1 dbname=x sslmode=disable sslpassword=Ssl-Secret-1",
    "host=127.0.0.1 port=1 dbname=x password='pw with space Secret-2'",
    "postgresql://app:Secret@3-tail@127.0.0.1:1/x",
    "postgresql://app@127.0.0.1:1/x?sslpassword=Secret-4",
    "postgresql://app@127.0.0.1:1/x?password=Secret-5",
]


def _secrets_in(text: str) -> list[str]:
    return re.findall(r"Secret[-@]\d|Secret-\d|3-tail", text)


@pytest.mark.per_adapter
@pytest.mark.parametrize("bad", SECRET_DSNS)
def test_cannot_connect_errors_show_no_secret(adapter: Adapter, bad: str) -> None:
    with pytest.raises((CannotConnect, ConfigurationError)) as info:
        adapter.connect(bad + (" connect_timeout=2" if "://" not in bad else ""))
    assert _secrets_in(str(info.value)) == [], str(info.value)


def _que_shows_no_secret(*args: str) -> None:
    out = que(*args, "--connect-timeout", "2", env=clean_env())
    assert _secrets_in(out.stdout + out.stderr) == [], (args, out.stdout + out.stderr)
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize("bad", SECRET_DSNS)
def test_que_config_shows_no_secret(bad: str) -> None:
    _que_shows_no_secret("config", "--dsn", bad)
    _que_shows_no_secret("config", "--json", "--dsn", bad)


@pytest.mark.per_adapter
@pytest.mark.parametrize("bad", SECRET_DSNS)
def test_que_cannot_connect_shows_no_secret(adapter: Adapter, bad: str) -> None:
    _que_shows_no_secret("stats", "--adapter", adapter.name, "--dsn", bad)
    if "sslpassword" in bad:
        _que_shows_no_secret("work", "--adapter", adapter.name, "--dsn", bad, "never_imported")


def test_worker_started_line_masks_every_secret(
    adapter: Adapter, dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    from que_core import Worker

    if adapter.name == "pg8000":
        secret_dsn = dsn + ("&" if "?" in dsn else "?") + "password=Secret-6"
    else:  # libpq takes sslpassword (unused without a client key)
        secret_dsn = f"{dsn}{'&' if '?' in dsn else '?'}sslpassword=Secret-6&password=Secret-7"
    caplog.set_level("INFO", logger="que_core")
    worker = Worker(secret_dsn, adapter=adapter, poll_interval=0.2)
    worker.start()
    try:
        started = [r for r in caplog.records if "worker started" in r.getMessage()]
        assert started
    finally:
        worker.stop(timeout=5)
    for formatter in (logs.TextFormatter(), logs.JsonFormatter()):
        for record in started:
            line = formatter.format(record)
            assert "Secret-" not in line, line
    assert "Secret-" not in repr(worker)


def test_djangos_built_dsn_is_masked() -> None:
    pytest.importorskip("django")
    from tests import django_support

    django_support.setup()
    from django.db import connections

    from que_core.contrib.django import db

    settings_dict = connections["default"].settings_dict
    saved = dict(settings_dict)
    settings_dict.update(PASSWORD="pw 'Secret-8' \\", OPTIONS={"sslpassword": "x' Secret-9 \\'"})
    try:
        built = db.worker_dsn()
    finally:
        settings_dict.clear()
        settings_dict.update(saved)
    parsed = parse_dsn(built)
    assert parsed["password"] == "pw 'Secret-8' \\" and parsed["sslpassword"] == "x' Secret-9 \\'"
    assert "Secret-" not in mask_password(f"worker started: <Worker {built}>")


# -- 9. clear errors instead of raw tracebacks -----------------------------------------------


def test_pg8000_connect_timeout_that_is_not_a_number(server_dsn: str) -> None:
    from que_core.plugins import get_adapter

    try:
        adapter = get_adapter("pg8000")
    except ConfigurationError:
        pytest.skip("the pg8000 adapter is not installed")
    bad = server_dsn + ("&" if "?" in server_dsn else "?") + "connect_timeout=abc"
    with pytest.raises(ConfigurationError, match="connect_timeout 'abc'"):
        adapter.connect(bad)
    out = que("stats", "--adapter", "pg8000", "--dsn", bad, env=clean_env())
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr and "connect_timeout 'abc'" in out.stderr


@pytest.mark.per_adapter
def test_missing_sslrootcert(adapter: Adapter, server_dsn: str, tmp_path: Path) -> None:
    if "unix_sock" in parse_dsn(server_dsn):
        pytest.skip("the embedded server is reached by a Unix socket, where libpq uses no SSL "
                    "(give QUE_TEST_DSN a TCP server)")
    missing = tmp_path / "no-such-root.crt"
    sep = "&" if "?" in server_dsn else "?"
    bad = f"{server_dsn}{sep}sslmode=verify-full&sslrootcert={missing}"
    with pytest.raises((ConfigurationError, CannotConnect)) as info:
        adapter.connect(bad)
    if adapter.name == "pg8000":  # libpq asks the server first, which has no SSL here
        assert str(missing) in str(info.value)
    out = que("stats", "--adapter", adapter.name, "--dsn", bad, env=clean_env())
    assert out.returncode in (2, 3), out.stderr
    assert "Traceback" not in out.stderr and out.stderr.startswith("Error: ")


def _nested(depth: int, leaf: Any = 1, dicts: bool = False) -> Any:
    value = leaf
    for _ in range(depth):
        value = {"k": value} if dicts else [value]
    return value


class DeepJob(Job):
    job_name = "hostile_local.DeepJob"


@DB_SETTINGS
@given(depth=st.integers(1, 6000), dicts=st.booleans(), as_kwarg=st.booleans())
@example(depth=100, dicts=False, as_kwarg=False)
@example(depth=101, dicts=True, as_kwarg=True)
@example(depth=5000, dicts=False, as_kwarg=False)
def test_enqueue_of_deeply_nested_args_is_an_invalid_job(
    conn: Connection, depth: int, dicts: bool, as_kwarg: bool
) -> None:
    value = _nested(depth, dicts=dicts)
    before = job_count(conn)
    args, kwargs = ((), {"deep": value}) if as_kwarg else ((value,), {})
    try:
        job = DeepJob.enqueue(*args, conn=conn.raw, **kwargs)
    except InvalidJob as exc:
        assert depth > 100
        assert "nested" in str(exc) and "levels deep" in str(exc)
        assert job_count(conn) == before
    else:
        assert depth <= 100  # validation.MAX_DEPTH
        assert job.id is not None
        assert job_count(conn) == before + 1


def test_jobs_list_args_filter_nested_20000_deep(dsn: str, adapter: Adapter) -> None:
    deep = "[" * 20000 + "]" * 20000
    out = que("jobs", "list", "--dsn", dsn, "--adapter", adapter.name, "--args", deep,
              env=clean_env())
    assert out.returncode == 2, out.stderr[-2000:]
    assert "Traceback" not in out.stderr and "nested too deeply" in out.stderr


def test_jobs_list_and_show_of_a_row_nested_5000_deep(conn: Connection, dsn: str,
                                                      adapter: Adapter) -> None:
    """Another program wrote args that PostgreSQL stores but Python's json
    module cannot read back."""
    deep = "[" * 5000 + "]" * 5000
    job_id = scalar(conn, "INSERT INTO que_jobs (job_class, args, job_schema_version) "
                    "VALUES ('Deep', %s::jsonb, 2) RETURNING id", deep)
    for args in (["jobs", "list"], ["jobs", "list", "--json"], ["jobs", "show", str(job_id)],
                 ["jobs", "show", str(job_id), "--json"]):
        out = que(*args, "--dsn", dsn, "--adapter", adapter.name, env=clean_env())
        assert out.returncode == 0, (args, out.stderr[-2000:])
        assert "Deep" in out.stdout and "Traceback" not in out.stderr


# -- 5. log and terminal forgery ---------------------------------------------------------

CONTROLS = [chr(c) for c in range(1, 0x20)] + ["\x7f"] + [chr(c) for c in range(0x80, 0xA0)] \
    + ["\u2028", "\u2029"]
FORGED = "\n2030-01-01 00:00:00,000 INFO que_core.worker: job worked: Forged id=1"
PIECES = [FORGED, "\x1b[1A\x1b[2K", "\r", "\x07", "\u2028", "\x85", "FORGED", " ", "é", "中"]
# Text without NUL (PostgreSQL text refuses it), rich in controls and forgeries.
HOSTILE = st.lists(
    st.sampled_from(CONTROLS) | st.sampled_from(PIECES)
    | st.characters(exclude_categories=("Cs",), exclude_characters="\x00"),
    min_size=1, max_size=10,
).map("".join)
RECORD_START = re.compile(r"^\d{4}-\d\d-\d\d ")


def _record(msg: str, *args: Any, exc: BaseException | None = None, **extra: Any) -> Any:
    import logging

    exc_info = (type(exc), exc, exc.__traceback__) if exc is not None else None
    return logging.getLogger("que_core.worker").makeRecord(
        "que_core.worker", logging.WARNING, __file__, 1, msg, args, exc_info, extra=extra)


def _raised(message: str) -> BaseException:
    try:
        raise ValueError(message)
    except ValueError as exc:
        return exc


@SETTINGS
@given(job_class=HOSTILE, queue=HOSTILE, error=HOSTILE, with_traceback=st.booleans())
def test_log_records_cannot_be_forged_or_reach_the_terminal(
    job_class: str, queue: str, error: str, with_traceback: bool
) -> None:
    exc = _raised(error) if with_traceback else None
    record = _record("job %s: %s queue=%s error=%s", "errored", job_class, queue, error,
                     exc=exc, job_class=job_class, queue=queue, error=error)
    text = logs.TextFormatter().format(record)
    assert _controls(text.replace("\n", "")) == [], repr(text)
    lines = text.split("\n")
    assert text.splitlines() == lines  # no other line break (U+2028, U+0085, ...)
    assert RECORD_START.match(lines[0]) and "job errored:" in lines[0]
    assert all(line.startswith("  ") for line in lines[1:]), lines  # the traceback, indented
    assert (len(lines) > 1) == with_traceback

    line = logs.JsonFormatter().format(record)
    assert _controls(line) == [] and line.splitlines() == [line], repr(line)
    out = json.loads(line)
    assert (out["job_class"], out["queue"], out["error"]) == (job_class, queue, error)
    assert out["message"] == f"job errored: {job_class} queue={queue} error={error}"
    if with_traceback:
        assert out["exc_info"].endswith(f"ValueError: {error}")


JOB_MODULE = '''
from que_core import Job

class Raises(Job):
    job_name = "hostile_local.Raises"
    maximum_retry_count = 0
    def run(self, message):
        raise ValueError(message)
'''


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_a_workers_log_is_not_forged_by_job_rows(
    adapter: Adapter, dsn: str, conn: Connection, tmp_path: Path, log_format: str
) -> None:
    """Rows naming a class with a forged log line in it, and a job whose
    error message carries one, worked by a real `que work`."""
    import signal
    import threading

    (tmp_path / "hostile_local_jobs.py").write_text(JOB_MODULE, encoding="utf-8")
    proc = subprocess.Popen(
        [sys.executable, "-m", "que_core.cli", "work", "--dsn", dsn, "--adapter", adapter.name,
         "-i", "0.2", "--log-format", log_format, "hostile_local_jobs"],
        cwd=ROOT, env=clean_env(PYTHONPATH=os.pathsep.join([str(tmp_path), str(ROOT)])),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    raw: list[bytes] = []
    reader = threading.Thread(target=lambda: raw.extend(proc.stderr or []), daemon=True)
    reader.start()
    try:
        wait_until(lambda: scalar(conn, "SELECT count(*) FROM que_lockers") == 1, within=20)
        evil = f"Evil{FORGED}\x1b[1A\x1b[2K\r\x07\u2028\x85"
        conn.execute("INSERT INTO que_jobs (job_class, queue, args, job_schema_version) "
                     "VALUES (%s, 'default', '[]', 2)", (evil,))
        conn.execute("INSERT INTO que_jobs (job_class, args, job_schema_version) "
                     "VALUES ('hostile_local.Raises', %s::jsonb, 2)", (json.dumps([evil]),))
        wait_until(lambda: scalar(conn, "SELECT count(*) FROM que_jobs WHERE error_count > 0")
                 == 2, within=30)
        wait_until(lambda: sum(b"Evil" in line for line in raw) >= 2, within=10)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
        reader.join(5)
    text = b"".join(raw).decode("utf-8").rstrip("\n")
    lines = text.split("\n")
    assert text.splitlines() == lines
    assert _controls(text.replace("\n", "")) == [], repr(text)
    assert not [line for line in lines if line.startswith("2030-")]
    if log_format == "json":
        events = [json.loads(line) for line in lines if line]
        assert evil in [e.get("job_class") for e in events]  # the data, intact
        assert any(evil in (e.get("error") or "") for e in events)


def _hostile_rows(conn: Connection, text: str) -> int:
    conn.execute("DELETE FROM que_jobs")
    conn.execute("DELETE FROM que_lockers WHERE pid = pg_backend_pid()")
    job_id = scalar(
        conn,
        "INSERT INTO que_jobs (job_class, queue, args, error_count, last_error_message,"
        " last_error_backtrace, job_schema_version) VALUES (%s, %s, %s::jsonb, 1, %s, %s, 2)"
        " RETURNING id",
        text[:200], text[:100], json.dumps([text]), text[:500], f"{text}\n  line 2 {text}",
    )
    # A locker row on a live session of this database (this one), not listening.
    conn.execute("INSERT INTO que_lockers (pid, worker_count, worker_priorities, ruby_pid,"
                 " ruby_hostname, queues, listening) VALUES (pg_backend_pid(), 1, '{1}', 1, %s,"
                 " ARRAY[%s], false)", (text, text[:100]))
    return int(job_id)


CLI_VIEWS = [["jobs", "list"], ["jobs", "show", "{id}"], ["stats"]]


def _invoke(args: list[str]) -> Any:
    """`que` in this process, as a terminal sees it (click strips some
    escapes from pipes); the logging handler it installs removed after."""
    import logging

    from click.testing import CliRunner

    from que_core.cli import main

    root = logging.getLogger()
    handlers, level, installed = list(root.handlers), root.level, logs._installed
    try:
        return CliRunner().invoke(main, args, color=True)
    finally:
        for handler in [h for h in root.handlers if h not in handlers]:
            root.removeHandler(handler)
        root.setLevel(level)
        logs._installed = installed


@pytest.mark.timeout(900)  # the full run's 200 examples each run que commands
@DB_SETTINGS
@given(text=HOSTILE)
def test_cli_views_escape_text_from_rows(
    adapter: Adapter, dsn: str, conn: Connection, text: str
) -> None:
    text = "x" + text  # a line starting with FORGED can only be a forged one
    job_id = _hostile_rows(conn, text)
    for view in CLI_VIEWS:
        args = [a.format(id=job_id) for a in view] + ["--dsn", dsn, "--adapter", adapter.name]
        shown = _invoke(args)
        assert shown.exit_code == 0, (view, shown.output)
        assert _controls(shown.output.replace("\n", "")) == [], (view, repr(shown.output))
        assert shown.output.splitlines() == shown.output.rstrip("\n").split("\n")
        assert not [ln for ln in shown.output.split("\n") if ln.startswith(("FORGED", "2030-"))]
        as_json = _invoke([*args, "--json"])
        assert as_json.exit_code == 0, (view, as_json.output)
        assert _controls(as_json.output.rstrip("\n")) == [], (view, repr(as_json.output))
        data = json.loads(as_json.output)  # the data itself, intact
        if view[0] == "stats":
            assert [lk["hostname"] for lk in data["workers"]["lockers"]] == [text]
        else:
            assert (data[0] if view[1] == "list" else data)["job_class"] == text[:200]


def test_cli_views_on_a_terminal(adapter: Adapter, dsn: str, conn: Connection) -> None:
    """`que jobs list`, `que jobs show` and `que stats` on a real pty: the
    cursor-up and erase-line of a forged row do not reach it."""
    import pty

    job_id = _hostile_rows(conn, "Evil\x1b[1A\x1b[2K\x1b]0;title\x07\rFORGED")
    for view in CLI_VIEWS:
        master, slave = pty.openpty()
        args = [a.format(id=job_id) for a in view]
        proc = subprocess.Popen(
            [sys.executable, "-m", "que_core.cli", *args, "--dsn", dsn, "--adapter",
             adapter.name], cwd=ROOT, env=clean_env(), stdin=subprocess.DEVNULL, stdout=slave,
            stderr=slave)
        os.close(slave)
        chunks = []
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the other end closed
                break
            if not chunk:
                break
            chunks.append(chunk)
        os.close(master)
        assert proc.wait(30) == 0
        seen = b"".join(chunks).decode("utf-8")
        assert "Evil" in seen, seen
        assert "\x1b" not in seen and "\x07" not in seen, (view, repr(seen))
        assert not [ln for ln in seen.split("\r\n") if ln.startswith("FORGED")]


# -- 9. databases._empty and schema names ------------------------------------------------------

SCHEMA_NAMES = st.lists(
    st.sampled_from(['"', "'", '""', ";", " ", "--", "\\", "%s", "%", "$1", "é"])
    | st.characters(exclude_categories=("Cs",), exclude_characters="\x00"),
    min_size=1, max_size=12,
).map("".join).filter(
    lambda n: not n.lower().startswith("pg_") and n != "information_schema"
    and len(n.encode()) <= 63)


def _schemas(conn: Connection) -> list[str]:
    return sorted(r[0] for r in conn.execute(
        "SELECT nspname FROM pg_namespace WHERE nspname <> 'information_schema' "
        "AND left(nspname, 3) <> 'pg_'"))


@DB_SETTINGS
@given(names=st.lists(SCHEMA_NAMES, min_size=1, max_size=3, unique=True))
def test_testdb_empties_schemas_of_any_name(
    adapter: Adapter, server_dsn: str, empty_dsn: str, names: list[str]
) -> None:
    from que_core.testing import databases

    with closing(adapter.connect(empty_dsn)) as conn:
        for name in names:
            create = scalar(conn, "SELECT format('CREATE SCHEMA %%I', %s::text)", name)
            conn.execute(create)
            conn.execute(scalar(conn, "SELECT format('CREATE TABLE %%I.t (x int)', %s::text)",
                                name))
    assert databases._empty(adapter, server_dsn, empty_dsn) is True
    with closing(adapter.connect(empty_dsn)) as conn:
        assert _schemas(conn) == ["public"]
        assert scalar(conn, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == 0


def test_testdb_schema_name_cannot_inject_sql(
    adapter: Adapter, server_dsn: str, empty_dsn: str
) -> None:
    """A schema named so that the old f-string ran a second statement."""
    import uuid

    from que_core.testing import databases

    role = f"que_injected_{uuid.uuid4().hex[:8]}"
    name = f'public" CASCADE; CREATE ROLE {role}; --'
    with closing(adapter.connect(empty_dsn)) as conn:
        conn.execute(scalar(conn, "SELECT format('CREATE SCHEMA %%I', %s::text)", name))
    with closing(adapter.connect(server_dsn)) as admin:
        emptied = databases._empty(adapter, server_dsn, empty_dsn)
        injected = scalar(admin, "SELECT count(*) FROM pg_roles WHERE rolname = %s", role)
        admin.execute(f"DROP ROLE IF EXISTS {role}")
    assert injected == 0
    assert emptied is True


# -- 3. code and settings from another user's directory ----------------------------------------

QUE_SCRIPT = Path(sys.executable).parent / "que"  # what users run: no directory on sys.path


def _reachable_by_all(path: Path) -> bool:
    """Whether every directory above *path* lets any user through."""
    return all(parent.stat().st_mode & stat.S_IXOTH for parent in path.parents)


_LAUNCHER = """
import runpy, site, sys
site.addsitedir(sys.argv.pop(1))  # this venv's site-packages, .pth files and all
if sys.argv[1] == "-c":
    code = sys.argv[2]
    sys.argv = ["-c", *sys.argv[3:]]
    exec(compile(code, "<string>", "exec"), {"__name__": "__main__"})
else:  # -m module
    module = sys.argv[2]
    sys.argv = [module, *sys.argv[3:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)
"""


def _python_for(user: str) -> list[str]:
    """This venv's Python as *user* can run it. Another user may not reach its
    interpreter (pyenv's lies under /root, 0700 on a normal machine): then the
    system's Python of the same version runs with this venv's site-packages."""
    if user == "root" or _reachable_by_all(Path(sys.executable).resolve()):
        return [sys.executable]
    system = Path(f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}")
    if not system.exists():
        pytest.skip(f"{user} cannot reach {Path(sys.executable).resolve()} and there is no "
                    f"{system} to run que-core with")
    launcher = Path(tempfile.gettempdir()) / f"que-test-launcher-{os.getpid()}.py"
    if not launcher.exists():
        launcher.write_text(_LAUNCHER, encoding="utf-8")
        launcher.chmod(0o644)
        atexit.register(launcher.unlink, missing_ok=True)
    return [str(system), str(launcher), sysconfig.get_paths()["purelib"]]


def _que_for(user: str) -> list[str]:
    """The `que` command as *user* runs it (see _python_for)."""
    python = _python_for(user)
    return [str(QUE_SCRIPT)] if python == [sys.executable] else [*python, "-m", "que_core.cli"]


PLANTED = '''
import pathlib
pathlib.Path(__file__).with_suffix(".imported").write_text("planted code ran")
'''
CWD_JOBS = '''
import pathlib
from que_core import Job

class FromCwd(Job):
    job_name = "hostile_local.FromCwd"
    def run(self, marker):
        pathlib.Path(marker).write_text("worked")
'''


def _demote(user: str) -> Any:
    import pwd

    entry = pwd.getpwnam(user)

    def demote() -> None:
        os.setgid(entry.pw_gid)
        os.setuid(entry.pw_uid)

    return demote


def test_work_imports_nothing_but_its_job_modules_from_the_current_directory(
    adapter: Adapter, dsn: str, conn: Connection, tmp_path: Path
) -> None:
    """A shared directory with a planted module for every name the worker
    imports after start-up (the driver, the adapter, pluggy)."""
    import signal

    planted = {"pluggy", "psycopg", "psycopg2", "pg8000", "prometheus_client"}
    planted |= {name.split(":")[0].split(".")[0] for name in (
        ep.value for ep in _entry_points("que.adapters"))}
    for name in planted:
        (tmp_path / f"{name}.py").write_text(PLANTED, encoding="utf-8")
    (tmp_path / "hostile_local_cwd_jobs.py").write_text(CWD_JOBS, encoding="utf-8")
    proc = subprocess.Popen(
        [str(QUE_SCRIPT), "work", "--dsn", dsn, "--adapter", adapter.name, "-i", "0.2",
         "hostile_local_cwd_jobs"], cwd=tmp_path, env=clean_env(),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    marker = tmp_path / "job-ran"
    try:
        wait_until(lambda: proc.poll() is not None
                 or scalar(conn, "SELECT count(*) FROM que_lockers") == 1, within=30)
        assert proc.poll() is None, (sorted(p.name for p in tmp_path.glob("*.imported")),
                                     proc.communicate()[1])
        conn.execute("INSERT INTO que_jobs (job_class, args, job_schema_version) "
                     "VALUES ('hostile_local.FromCwd', %s::jsonb, 2)", (json.dumps([str(marker)]),))
        wait_until(marker.exists, within=30)  # the named job module came from the directory
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    ran = sorted(p.stem for p in tmp_path.glob("*.imported"))
    assert ran == [], (ran, err)
    assert proc.returncode == 0, err


def _entry_points(group: str) -> list[Any]:
    from importlib.metadata import entry_points

    return list(entry_points(group=group))


@ROOT_ONLY
@pytest.mark.parametrize("owner, mode", [("nobody", 0o644), ("root", 0o666)],
                         ids=["another-users-file", "world-writable"])
def test_settings_another_user_could_write_are_refused(
    tmp_path: Path, dsn: str, adapter: Adapter, owner: str, mode: int
) -> None:
    """A pyproject.toml planted in a sticky world-writable directory (as /tmp)
    by another user, naming the modules, the DSN and the metrics port."""
    import pwd

    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    planted = shared / "pyproject.toml"
    planted.write_text('[tool.que]\nmodules = ["this"]\ndsn = "postgresql://mallory@127.0.0.1:1/x"'
                       "\nmetrics_port = 9999\n", encoding="utf-8")
    entry = pwd.getpwnam(owner)
    os.chown(planted, entry.pw_uid, entry.pw_gid)
    planted.chmod(mode)
    for args in (["config"], ["config", "--json"],
                 ["work", "--dsn", dsn, "--adapter", adapter.name]):
        out = subprocess.run([str(QUE_SCRIPT), *args], cwd=shared, env=clean_env(),
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 2, (args, out.stdout, out.stderr)
        assert f"refusing the settings in {planted}" in out.stderr
        assert ("owned by nobody" if owner == "nobody" else "every user may write") in out.stderr
        assert "Zen of Python" not in out.stdout + out.stderr and "Traceback" not in out.stderr


@pytest.fixture
def public_dir() -> Any:
    """A directory every user can enter (pytest's tmp_path is root's alone)."""
    import shutil
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="que-hostile-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@ROOT_ONLY
def test_settings_owned_by_root_or_the_user_are_read(public_dir: Path) -> None:
    """The refusal is only for files another user controls: `que config` run
    as nobody reads a root-owned pyproject.toml and its own."""
    import pwd

    nobody = pwd.getpwnam("nobody")
    tmp_path = public_dir
    for owner in ("root", "nobody"):
        project = tmp_path / owner
        project.mkdir(mode=0o755)
        (project / "pyproject.toml").write_text("[tool.que]\nworkers = 3\n", encoding="utf-8")
        if owner == "nobody":
            os.chown(project / "pyproject.toml", nobody.pw_uid, nobody.pw_gid)
        out = subprocess.run([*_que_for("nobody"), "config", "--json"], cwd=project,
                             env=clean_env(HOME=str(project)), capture_output=True, text=True,
                             timeout=30, preexec_fn=_demote("nobody"))
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["settings"]["workers"]["value"] == 3


# -- 4. names from the database get imported (Django) ------------------------------------------


django_db = django_support.django_db  # the fixture (it skips without Django)


def _planted_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Path]:
    """A module on sys.path that nothing imported yet, recording its import."""
    import uuid

    name = f"que_hostile_planted_{uuid.uuid4().hex[:8]}"
    marker = tmp_path / f"{name}.imported"
    (tmp_path / f"{name}.py").write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).write_text('imported')\ns = 'x'\n",
        encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    return name, marker


def test_a_task_row_never_imports_the_path_it_names(
    django_db: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Forged TaskJob rows naming `this.s` (the Zen of Python) and a module
    planted on sys.path: neither the worker nor get_result imports them."""
    from que_core.contrib.django.tasks import TaskJob, api
    from que_core.testing import drain

    name, marker = _planted_module(tmp_path, monkeypatch)
    assert "this" not in sys.modules
    backend = api.task_backends["default"]
    ids = [TaskJob.enqueue(path, "default", [], {}).id for path in (f"{name}.s", "this.s")]
    for job_id in ids:
        with pytest.raises(api.TaskResultDoesNotExist):
            backend.get_result(str(job_id))
    drain(raise_errors=False)
    assert not marker.exists() and name not in sys.modules
    assert "this" not in sys.modules
    rows = django_db.conn.execute(
        "SELECT last_error_message FROM que_jobs WHERE id = ANY(%s) ORDER BY id", (ids,))
    assert [("not a Task known" in (r[0] or "")) for r in rows] == [True, True], rows


SETTINGS_MODULE = '''
from tests.django_settings import *  # noqa: F403

EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"  # not que-core's
EMAIL_FILE_PATH = {mail_dir!r}
QUE = {{"EMAIL_BACKEND": EMAIL_BACKEND, "POLL_INTERVAL": 0.2}}
TASKS = {{"default": {{"BACKEND": {immediate!r}}}}}
INSTALLED_APPS = ["que_core.contrib.django", "tests.django_app"]
'''


def test_que_work_runs_email_and_task_jobs_only_where_configured(
    django_db: Any, tmp_path: Path
) -> None:
    """A project that sends mail straight through a real backend, with no
    que-core task backend: a forged SendEmailJob row must not send a mail,
    nor a forged TaskJob row run a task."""
    import signal

    from que_core.contrib.django.mail import SendEmailJob, serialize
    from que_core.contrib.django.tasks import TaskJob, api

    immediate = f"{api.package}.backends.immediate.ImmediateBackend"
    mail_dir = tmp_path / "mail"
    mail_dir.mkdir()
    (tmp_path / "hostile_settings.py").write_text(
        SETTINGS_MODULE.format(mail_dir=str(mail_dir), immediate=immediate), encoding="utf-8")
    from django.core.mail import EmailMessage

    message = serialize(EmailMessage("forged", "sent by a forged row", "a@example.com",
                                     ["victim@example.com"]))
    conn = django_db.conn
    for job_class, args in ((SendEmailJob.job_name, [message]),
                            (TaskJob.job_name, ["tests.django_app.tasks.add", "default", [1, 2],
                                                {}])):
        conn.execute("INSERT INTO que_jobs (job_class, args, job_schema_version) "
                     "VALUES (%s, %s::jsonb, 2)", (job_class, json.dumps(args)))
    env = dict(os.environ, QUE_DJANGO_DATABASE_URL=django_db.dsn,
               DJANGO_SETTINGS_MODULE="hostile_settings",
               PYTHONPATH=os.pathsep.join([str(tmp_path), str(ROOT)]))
    proc = subprocess.Popen([sys.executable, "-m", "django", "que_work", "-i", "0.2"], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_until(lambda: proc.poll() is not None or scalar(  # both rows worked (or gone)
            conn, "SELECT count(*) FROM que_jobs WHERE error_count = 0 AND finished_at IS NULL"
            " AND expired_at IS NULL") == 0, within=60)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert list(mail_dir.iterdir()) == [], out
    errors = [r[0] for r in conn.execute("SELECT last_error_message FROM que_jobs ORDER BY id")]
    assert len(errors) == 2 and all("not registered" in (e or "") or "nknown" in (e or "")
                                    for e in errors), (errors, out)
    assert proc.returncode == 0, out


# -- 9. Django get_result on malformed rows --------------------------------------------------

JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6)
    | st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=8)
    | st.sampled_from(["tests.django_app.tasks.add", "default", "2030-01-01T00:00:00+00:00",
                       "not a time"]),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(
        st.sampled_from(["django_task", "enqueued_at", "started_at", "finished_at", "errors",
                         "worker_ids", "deferred", "return_value", "exception_class_path",
                         "traceback", "x"]), inner, max_size=5),
    max_leaves=12,
)
# que_jobs' constraints keep args an array and data an object.
ROW_ARGS = st.lists(JSONISH, max_size=5) | st.tuples(
    st.sampled_from(["tests.django_app.tasks.add", "this.s", "os.system"]),
    st.sampled_from(["default", "retrying", "nope"]), JSONISH, JSONISH,
).map(list)
ROW_DATA = st.dictionaries(st.sampled_from(["django_task", "x"]), JSONISH, max_size=2)


@DB_SETTINGS
@given(args=ROW_ARGS, data=ROW_DATA, priority=st.integers(-32768, 32767),
       finished=st.booleans())
def test_get_result_of_a_malformed_row_is_task_result_does_not_exist(
    django_db: Any, args: Any, data: Any, priority: int, finished: bool
) -> None:
    from que_core.contrib.django.tasks import TaskJob, api

    row = django_db.conn.execute(
        "INSERT INTO que_jobs (job_class, args, data, priority, finished_at, job_schema_version)"
        " VALUES (%s, %s::jsonb, %s::jsonb, %s, CASE WHEN %s THEN now() END, 2) RETURNING id",
        (TaskJob.job_name, json.dumps(args), json.dumps(data), priority, finished))
    try:
        result = api.task_backends["default"].get_result(str(row[0][0]))
    except api.TaskResultDoesNotExist:
        return
    assert result.id == str(row[0][0])
    assert result.task.module_path == "tests.django_app.tasks.add"


# -- 2. the embedded server's socket ------------------------------------------------------------

EMBEDDED = pytest.mark.skipif(
    os.geteuid() != 0 or not __import__("importlib").util.find_spec("pgserver"),
    reason="needs root (acts as two local users) and pgserver")


def _pg_bin(name: str) -> str:
    import pgserver

    return str(Path(pgserver.__file__).parent / "pginstall" / "bin" / name)


def _long_dir(base: Path, length: int = 115) -> Path:
    """A data directory path of *length* characters: too long for a socket in it."""
    return base / ("d" * (length - len(str(base)) - 1))


def _socket_dir(data_dir: Path) -> Path | None:
    try:
        lines = (data_dir / "postmaster.pid").read_text().splitlines()
    except OSError:
        return None
    return Path(lines[4]) if len(lines) > 4 and lines[4] else None


def _as(user: str, *cmd: str, env: dict[str, str] | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, cwd="/",
                          env=env, preexec_fn=None if user == "root" else _demote(user))


def _superuser_as(user: str, socket_dir: Path) -> subprocess.CompletedProcess[str]:
    """psql to the socket as *user*: what another local user could do."""
    return _as(user, _pg_bin("psql"), "-h", str(socket_dir), "-U", "postgres", "-Atc",
               "SELECT rolsuper FROM pg_roles WHERE rolname = current_user", "postgres",
               timeout=30)


def _embedded_env(home: Path, **extra: str) -> dict[str, str]:
    env = clean_env(HOME=str(home), **extra)
    for name in ("XDG_DATA_HOME", "XDG_RUNTIME_DIR"):
        env.pop(name, None)
    return env


@pytest.fixture
def servers() -> Any:
    """Data directories whose servers the test stops at the end, and
    directories of /tmp it may have made (pgserver's and ours)."""
    import shutil

    started: list[tuple[str, Path]] = []
    made = [Path(f"/tmp/{prefix}-{uid}")
            for prefix in ("runtime", "que-core") for uid in (0, 65534)]
    before = {p for p in made if p.exists()}
    yield started
    for user, data_dir in started:
        if (data_dir / "postmaster.pid").exists():
            _as(user, _pg_bin("pg_ctl"), "-D", str(data_dir), "-m", "immediate", "-w", "stop")
        sock = _socket_dir(data_dir)
        if sock is not None and "python_PostgresServer" in str(sock):
            shutil.rmtree(sock, ignore_errors=True)
    for p in made:
        if p not in before:
            shutil.rmtree(p, ignore_errors=True)


@EMBEDDED
@pytest.mark.slow
def test_embedded_server_of_a_long_data_dir_as_root(public_dir: Path, servers: Any) -> None:
    """Root runs `que migrate --embedded --embedded-dir <115 characters>`;
    another user then tries the server's socket."""
    data_dir = _long_dir(public_dir)
    servers.append(("pgserver", data_dir))
    out = _as("root", str(QUE_SCRIPT), "migrate", "--embedded", "--embedded-dir", str(data_dir),
              env=_embedded_env(public_dir))
    assert "Traceback" not in out.stderr, out.stderr
    sock = _socket_dir(data_dir)
    if sock is not None:
        got = _superuser_as("nobody", sock)
        assert got.returncode != 0 and got.stdout.strip() != "t", (sock, got.stdout)
    else:
        assert out.returncode == 2 and "too long for its socket" in out.stderr, out.stderr


def _nobodys_server_dir(public_dir: Path, servers: Any) -> tuple[Path, Path]:
    """A home directory of nobody's and a long data directory in it, for an
    embedded server that *servers* stops at the end."""
    import pwd

    home = public_dir / "home"
    home.mkdir()
    nobody = pwd.getpwnam("nobody")
    os.chown(home, nobody.pw_uid, nobody.pw_gid)
    data_dir = _long_dir(home)
    servers.append(("nobody", data_dir))
    return home, data_dir


@EMBEDDED
@pytest.mark.slow
def test_embedded_server_of_a_long_data_dir_as_a_user(public_dir: Path, servers: Any) -> None:
    """nobody runs the embedded server from a long path; daemon, another
    local user, tries its socket."""
    home, data_dir = _nobodys_server_dir(public_dir, servers)
    out = _as("nobody", *_que_for("nobody"), "migrate", "--embedded", "--embedded-dir",
              str(data_dir), env=_embedded_env(home))
    assert out.returncode == 0, out.stderr
    sock = _socket_dir(data_dir)
    assert sock is not None
    assert _superuser_as("nobody", sock).stdout.strip() == "t"  # its owner's server
    got = _superuser_as("daemon", sock)
    assert got.returncode != 0 and "Permission denied" in got.stderr, (sock, got.stdout)


@EMBEDDED
@pytest.mark.slow
def test_a_running_embedded_server_with_an_open_socket_is_refused(
    public_dir: Path, servers: Any
) -> None:
    """A server an older que-core left running with its socket in pgserver's
    shared runtime directory is not used (nor migrated) again."""
    home, data_dir = _nobodys_server_dir(public_dir, servers)
    old = _as("nobody", *_python_for("nobody"), "-c",
              f"import pgserver; pgserver.get_server({str(data_dir)!r}, cleanup_mode=None)",
              env=_embedded_env(home))
    assert old.returncode == 0, old.stderr
    sock = _socket_dir(data_dir)
    assert sock is not None and "python_PostgresServer" in str(sock)
    out = _as("nobody", *_que_for("nobody"), "migrate", "--embedded", "--embedded-dir",
              str(data_dir), env=_embedded_env(home))
    assert out.returncode == 2, out.stdout + out.stderr
    assert f"its socket is in {sock}, which other users can reach" in out.stderr
    tables = _as("nobody", _pg_bin("psql"), "-h", str(sock), "-U", "postgres", "-Atc",
                 "SELECT count(*) FROM pg_tables WHERE tablename = 'que_jobs'", "postgres")
    assert tables.stdout.strip() == "0"


@EMBEDDED
@pytest.mark.parametrize("content", [False, True], ids=["empty", "with-a-file"])
def test_embedded_server_never_chowns_a_directory_it_did_not_create(
    public_dir: Path, servers: Any, content: bool
) -> None:
    existing = public_dir / "existing"
    existing.mkdir(mode=0o700)
    if content:
        (existing / "notes.txt").write_text("root's", encoding="utf-8")
    servers.append(("pgserver", existing))
    out = _as("root", str(QUE_SCRIPT), "migrate", "--embedded", "--embedded-dir", str(existing),
              env=_embedded_env(public_dir))
    st = existing.stat()
    assert (st.st_uid, st.st_mode & 0o7777) == (0, 0o700)
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr and "would chown the directory" in out.stderr


@EMBEDDED
def test_embedded_server_as_root_never_opens_a_private_directory(
    public_dir: Path, servers: Any
) -> None:
    """Root's home is 0700: a data directory under it (the old default,
    ~/.local/share/que-core/pgdata) would have it opened to every user."""
    home = public_dir / "root-home"
    home.mkdir(mode=0o700)
    data_dir = home / ".local" / "share" / "que-core" / "pgdata"
    servers.append(("pgserver", data_dir))
    out = _as("root", str(QUE_SCRIPT), "migrate", "--embedded", "--embedded-dir",
              str(data_dir), env=_embedded_env(home))
    assert home.stat().st_mode & 0o7777 == 0o700
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr and f"{home} is owned by root, mode 0700" in out.stderr
    # As root the default needs no such change: it is outside home, under
    # root's directories that everyone may already enter.
    shown = _as("root", str(QUE_SCRIPT), "config", "--json", env=_embedded_env(home))
    default = Path(json.loads(shown.stdout)["settings"]["embedded_dir"]["value"])
    assert home not in default.parents
    for parent in (p for p in default.parents if p.exists()):
        st = parent.stat()
        assert st.st_uid == 0 and st.st_mode & 0o055 == 0o055 and not st.st_mode & 0o002
