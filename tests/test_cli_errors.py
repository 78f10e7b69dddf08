"""What a new user gets wrong, answered with one clear line and exit status 2:
job modules that raise at import, DSNs that are not PostgreSQL's or cannot be
read, a SQLAlchemy-style URL (accepted), a schema version that does not exist."""

from __future__ import annotations

from pathlib import Path

import pytest

from conformance.fixtures import free_port
from que_core import Worker
from que_core.connection import Adapter
from que_core.dsn import check_dsn
from que_core.errors import ConfigurationError
from tests.test_cli_admin import clean_env, que


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from que_core import Job\nraise RuntimeError('no API key set')\n",
         "cannot import job module 'badjobs': it raised RuntimeError: no API key set "
         "(at {path}, line 2)"),
        ("def broken(:\n    pass\n",
         "cannot import job module 'badjobs': SyntaxError: invalid syntax (badjobs.py, line 1)"),
        ("import no_such_dependency_h17\n",
         "cannot import job module 'badjobs': No module named 'no_such_dependency_h17'"),
    ],
    ids=["raises", "syntax-error", "missing-dependency"],
)
def test_a_job_module_that_fails_to_import_exits_2_in_one_line(
    tmp_path: Path, dsn: str, adapter: Adapter, source: str, expected: str
) -> None:
    path = tmp_path / "badjobs.py"
    path.write_text(source, encoding="utf-8")
    out = que("work", "--dsn", dsn, "--adapter", adapter.name, "badjobs", cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip() == "Error: " + expected.format(path=path)
    assert "Traceback" not in out.stderr


# -- DSNs ------------------------------------------------------------------------------


def test_check_dsn_accepts_the_sqlalchemy_form_and_names_what_is_wrong() -> None:
    assert check_dsn("postgresql+psycopg://u:pw@h/db") == "postgresql://u:pw@h/db"
    assert check_dsn("postgres+psycopg2://h/db?sslmode=require") == "postgresql://h/db?sslmode=require"
    assert check_dsn("PostgreSQL+pg8000://h") == "postgresql://h"
    assert check_dsn("host=h dbname=d") == "host=h dbname=d"
    assert check_dsn("postgresql://h1,h2/db") == "postgresql://h1,h2/db"  # libpq takes several
    bad = {
        "mysql://u:hunter2@h/db": "its scheme is 'mysql://'; que-core needs postgresql://",
        "postgresql://h:port/db": "port 'port' is not a number",
        "postgresql://h:70000/db": "port 70000 is out of range",
        "host=h sslmode=sometimes": "sslmode 'sometimes' is not one of disable, allow",
        "hunter2": "expected key=value at character 1",
        "password='hunter2": "unterminated quoted value for 'password'",
    }
    for dsn, why in bad.items():
        with pytest.raises(ConfigurationError) as info:
            check_dsn(dsn, "env DATABASE_URL")
        assert why in str(info.value)
        assert str(info.value).endswith("(the DSN from env DATABASE_URL)")
        assert "hunter2" not in str(info.value)


def _sqlalchemy_url(dsn: str, adapter: Adapter) -> str:
    if not dsn.startswith("postgresql://"):
        pytest.skip("needs a postgresql:// URL to the test server")
    return dsn.replace("postgresql://", f"postgresql+{adapter.name}://", 1)


@pytest.mark.per_adapter
def test_a_sqlalchemy_style_url_is_accepted(dsn: str, adapter: Adapter) -> None:
    url = _sqlalchemy_url(dsn, adapter)
    out = que("migrate", "--status", "--dsn", url, "--adapter", adapter.name)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("schema version 7, que-core revision "), out.stdout
    assert out.stdout.rstrip().endswith("up to date"), out.stdout
    worker = Worker(url, adapter=adapter, poll_interval=0.2).start()  # in a process too
    worker.stop(timeout=10)


@pytest.mark.parametrize(
    ("dsn", "why"),
    [
        ("mysql://root:hunter2@127.0.0.1/app",
         "the DSN is not PostgreSQL's: its scheme is 'mysql://'"),
        ("postgresql://postgres:hunter2@127.0.0.1:port/app",
         "cannot read the DSN: port 'port' is not a number"),
        ("postgresql://postgres:hunter2@[::1/app", "cannot read the DSN: malformed IPv6 host"),
        ("host=127.0.0.1 password=hunter2 dbname", "cannot read the DSN: expected key=value"),
    ],
    ids=["mysql", "port", "ipv6", "key-without-value"],
)
@pytest.mark.per_adapter
def test_a_dsn_that_cannot_work_exits_2_saying_why_and_where_from(
    adapter: Adapter, dsn: str, why: str
) -> None:
    out = que("stats", "--adapter", adapter.name, env=clean_env(DATABASE_URL=dsn))
    assert out.returncode == 2, out.stderr
    assert why in out.stderr
    assert "(the DSN from env DATABASE_URL)" in out.stderr
    assert "connect_timeout" not in out.stderr  # the user never typed it
    assert "hunter2" not in out.stderr


@pytest.mark.per_adapter
def test_an_option_libpq_does_not_know_exits_2(server_dsn: str, adapter: Adapter) -> None:
    if not server_dsn.startswith("postgresql://"):
        pytest.skip("needs a postgresql:// URL to the test server")
    dsn = server_dsn + ("&" if "?" in server_dsn else "?") + "sslmod=require"
    out = que("stats", "--dsn", dsn, "--adapter", adapter.name)
    assert out.returncode == 2, out.stderr
    assert "sslmod" in out.stderr
    assert "connect_timeout" not in out.stderr


@pytest.mark.per_adapter
def test_connection_errors_name_the_dsn_as_given(adapter: Adapter) -> None:
    dsn = f"postgresql://postgres:hunter2@127.0.0.1:{free_port()}/nowhere"
    out = que("stats", "--dsn", dsn, "--adapter", adapter.name)
    assert out.returncode == 3, out.stderr
    masked = dsn.replace("hunter2", "****")
    assert f"cannot connect to {masked}:" in out.stderr
    assert "connect_timeout" not in out.stderr


def test_migrating_to_a_version_that_does_not_exist_is_a_bad_flag_value(
    empty_dsn: str, adapter: Adapter
) -> None:
    out = que("migrate", "--to", "9", "--dsn", empty_dsn, "--adapter", adapter.name)
    assert out.returncode == 2, out.stderr
    assert "Invalid value for '--to': 9: versions go from 0 (no que schema) to 7" in out.stderr
    out = que("migrate", "--status", "--dsn", empty_dsn, "--adapter", adapter.name)
    assert "schema version 0" in out.stdout  # nothing was done

