"""que_core.dsn.parse_dsn: libpq connection strings as keyword arguments."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conformance.fixtures import URL, URL_PARTS
from que_core.dsn import parse_dsn
from que_core.errors import ConfigurationError


def test_url() -> None:
    assert parse_dsn(URL) == {**URL_PARTS, "dbname": "app"}


def test_url_parts_are_percent_decoded_and_query_wins() -> None:
    got = parse_dsn("postgres://u%40x:p%3Aw%2F@h/d%20b?sslmode=require&dbname=other&a=b+c")
    assert got == {
        "user": "u@x",
        "password": "p:w/",
        "host": "h",
        "dbname": "other",
        "sslmode": "require",
        "a": "b+c",  # libpq does not read + as a space
    }


def test_url_with_ipv6_host() -> None:
    assert parse_dsn("postgresql://[::1]:5433/db") == {"host": "::1", "port": 5433, "dbname": "db"}


def test_url_without_anything() -> None:
    assert parse_dsn("postgresql://") == {}
    assert parse_dsn("postgresql:///db") == {"dbname": "db"}


@pytest.mark.parametrize(
    "dsn",
    [
        "postgresql:///db?host=/var/run/postgresql",
        "postgresql://%2Fvar%2Frun%2Fpostgresql/db",
        "host=/var/run/postgresql/ dbname=db",
    ],
)
def test_socket_directory_becomes_unix_sock(dsn: str) -> None:
    assert parse_dsn(dsn) == {"dbname": "db", "unix_sock": "/var/run/postgresql/.s.PGSQL.5432"}


def test_socket_path_uses_the_port() -> None:
    got = parse_dsn("host=/tmp/Sock port=6000")
    assert got == {"port": 6000, "unix_sock": "/tmp/Sock/.s.PGSQL.6000"}


def test_key_value_form() -> None:
    got = parse_dsn("host=h  port = 5433 user=bob password='it\\'s a \\\\ secret' dbname=")
    assert got == {
        "host": "h",
        "port": 5433,
        "user": "bob",
        "password": "it's a \\ secret",
        "dbname": "",
    }


def test_later_key_wins() -> None:
    assert parse_dsn("dbname=a dbname=b") == {"dbname": "b"}


def test_empty_dsn() -> None:
    assert parse_dsn("") == {}


@pytest.mark.parametrize(
    "dsn",
    [
        "mysql://h/db",
        "postgresql://h1,h2/db",
        "postgresql://h:port/db",
        "postgresql://[::1/db",
        "postgresql://h/db?sslmode",
        "host",
        "=x",
        "port=five",
        "password='unterminated",
    ],
)
def test_malformed(dsn: str) -> None:
    with pytest.raises(ConfigurationError):
        parse_dsn(dsn)


def test_errors_mask_the_password() -> None:
    with pytest.raises(ConfigurationError) as info:
        parse_dsn("postgresql://bob:hunter2@h:x/db")
    assert "hunter2" not in str(info.value)
    with pytest.raises(ConfigurationError) as info:
        parse_dsn("password hunter2")
    assert "hunter2" not in str(info.value)


values = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\0"))


@given(user=values, password=values, dbname=values)
def test_key_value_quoting_round_trips(user: str, password: str, dbname: str) -> None:
    def q(v: str) -> str:
        return "'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'"

    dsn = f"user={q(user)} password={q(password)} dbname={q(dbname)}"
    assert parse_dsn(dsn) == {"user": user, "password": password, "dbname": dbname}


@given(user=values, password=values, dbname=values)
def test_url_percent_encoding_round_trips(user: str, password: str, dbname: str) -> None:
    dsn = "postgresql://{}:{}@h/{}".format(*(quote(v, safe="") for v in (user, password, dbname)))
    expected = {"password": password, "host": "h"}
    if user:
        expected["user"] = user
    if dbname:
        expected["dbname"] = dbname
    assert parse_dsn(dsn) == expected
