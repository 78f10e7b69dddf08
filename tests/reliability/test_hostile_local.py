"""Hostile neighbours (issue 16, items 2-6 and 9): another local user, or
another program writing to the database, against the local tools.

Each test reproduces one attack as the issue describes it: the embedded
server's socket, code and settings planted in the current directory, task
paths and job names from forged rows, log and terminal forgery, secrets in
DSNs, and input that used to end in a raw traceback. Where the input space
is large the test is property-based (hypothesis)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import unicodedata
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from que_core import Job, logs
from que_core.connection import Adapter, Connection
from que_core.dsn import MASK, mask_password, parse_dsn
from que_core.errors import CannotConnect, ConfigurationError, InvalidJob
from tests.helpers import job_count, scalar, wait_for
from tests.test_cli_admin import ROOT, clean_env, que

SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    database=None,
)
ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: acts as two local users")


def _controls(text: str) -> list[str]:
    """The characters of *text* that move a terminal's cursor or end a line:
    C0 and C1 controls, DEL, U+2028 and U+2029 (tab aside)."""
    return [c for c in text if c != "\t" and unicodedata.category(c) in ("Cc", "Zl", "Zp")]


# -- 6. secrets in DSNs ----------------------------------------------------------------

# libpq's secret parameters ("*" in PQconndefaults) and its SCRAM keys.
SECRET_KEYS = ["oauth_client_secret", "password", "scram_client_key", "scram_server_key",
               "sslpassword"]
# What a secret may hold: anything but NUL and lone surrogates.
ANY_TEXT = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"),
                   min_size=1, max_size=30)
# Unencoded in a URL's user info: up to the first "/" or space ends the authority.
RAW_USERINFO = st.text(
    st.characters(exclude_categories=("Cs", "Zs", "Zl", "Zp", "Cc"), exclude_characters="/"),
    min_size=1, max_size=30,
)


def _kv_quoted(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _kv_escaped(value: str) -> str:
    """libpq's unquoted form: a backslash before each space, quote or backslash."""
    out = re.sub(r"([\\'\s])", r"\\\1", value)
    return out


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
        with pytest.raises(ConfigurationError, match="unencoded '@'") as info:
            parse_dsn(text)
        assert secret not in str(info.value)


SECRET_DSNS = [
    "host=127.0.0.1 port=1 dbname=x sslmode=disable sslpassword=Ssl-Secret-1",
    "host=127.0.0.1 port=1 dbname=x password='pw with space Secret-2'",
    "postgresql://app:Secret@3-tail@127.0.0.1:1/x",
    "postgresql://app@127.0.0.1:1/x?sslpassword=Secret-4",
    "postgresql://app@127.0.0.1:1/x?password=Secret-5",
]


def _secrets_in(text: str) -> list[str]:
    return re.findall(r"Secret[-@]\d|Secret-\d|3-tail", text)


@pytest.mark.parametrize("bad", SECRET_DSNS)
def test_cannot_connect_errors_show_no_secret(adapter: Adapter, bad: str) -> None:
    with pytest.raises((CannotConnect, ConfigurationError)) as info:
        adapter.connect(bad + (" connect_timeout=2" if "://" not in bad else ""))
    assert _secrets_in(str(info.value)) == [], str(info.value)


@pytest.mark.parametrize("bad", SECRET_DSNS)
def test_que_commands_show_no_secret(adapter: Adapter, bad: str) -> None:
    for args in (["config"], ["config", "--json"], ["stats", "--adapter", adapter.name],
                 ["work", "--adapter", adapter.name, "this_module_is_never_reached"]):
        out = que(*args, "--dsn", bad, "--connect-timeout", "2", env=clean_env())
        assert _secrets_in(out.stdout + out.stderr) == [], (args, out.stdout + out.stderr)
        assert "Traceback" not in out.stderr


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


def test_missing_sslrootcert(adapter: Adapter, server_dsn: str, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-root.crt"
    bad = f"{server_dsn}{'&' if '?' in server_dsn else '?'}sslmode=verify-full&sslrootcert={missing}"
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


@SETTINGS
@given(depth=st.integers(1, 6000), dicts=st.booleans(), as_kwarg=st.booleans())
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
                    "VALUES ('Deep', %s::jsonb, 2) RETURNING id", (deep,))
    for args in (["jobs", "list"], ["jobs", "list", "--json"], ["jobs", "show", str(job_id)],
                 ["jobs", "show", str(job_id), "--json"]):
        out = que(*args, "--dsn", dsn, "--adapter", adapter.name, env=clean_env())
        assert out.returncode == 0, (args, out.stderr[-2000:])
        assert "Deep" in out.stdout and "Traceback" not in out.stderr
