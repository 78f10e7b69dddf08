"""Django's database connection as a que-core Connection, and the worker's DSN."""

from __future__ import annotations

from typing import Any

from que_core.connection import Connection
from que_core.contrib._connection import FrameworkConnection
from que_core.contrib.django import conf

#: libpq connection parameters a ``DATABASES[...]["OPTIONS"]`` entry may pass on
#: to the worker's own sessions (the rest are Django's or psycopg's objects).
_LIBPQ_OPTIONS = frozenset(
    {
        "application_name",
        "connect_timeout",
        "keepalives",
        "keepalives_idle",
        "keepalives_interval",
        "keepalives_count",
        "options",
        "passfile",
        "service",
        "sslcert",
        "sslkey",
        "sslmode",
        "sslrootcert",
        "sslcrl",
        "sslpassword",
        "target_session_attrs",
        "tcp_user_timeout",
    }
)


def database_alias() -> str:
    return str(conf.get("DATABASE"))


def django_connection(alias: str | None = None) -> Any:
    """``django.db.connections[alias]``, checked to be PostgreSQL."""
    from django.core.exceptions import ImproperlyConfigured
    from django.db import connections
    from django.utils.connection import ConnectionDoesNotExist

    alias = alias or database_alias()
    try:
        wrapper = connections[alias]
    except ConnectionDoesNotExist:
        raise ImproperlyConfigured(
            f"que-core uses the database {alias!r} (QUE['DATABASE']), which is not in "
            f"settings.DATABASES"
        ) from None
    check_postgresql(wrapper)
    return wrapper


def check_postgresql(wrapper: Any) -> None:
    from django.core.exceptions import ImproperlyConfigured

    if wrapper.vendor != "postgresql":
        raise ImproperlyConfigured(
            f"que-core needs PostgreSQL, but the database {wrapper.alias!r} uses "
            f"{wrapper.settings_dict.get('ENGINE')!r} ({wrapper.vendor}). Use "
            f"django.db.backends.postgresql for it, or point QUE['DATABASE'] at a "
            f"PostgreSQL database."
        )


def connection(alias: str | None = None) -> Connection:
    """A que-core Connection on Django's connection *alias* (default
    ``QUE['DATABASE']``) in this thread: statements join Django's current
    transaction; ``transaction()`` is ``transaction.atomic(using=alias)``."""
    return wrap(django_connection(alias))


def wrap(wrapper: Any) -> Connection:
    """A que-core Connection on a Django ``BaseDatabaseWrapper``."""
    from django.db import transaction

    from que_core.plugins import wrap_connection

    check_postgresql(wrapper)
    wrapper.ensure_connection()
    inner = wrap_connection(wrapper.connection)
    alias = wrapper.alias
    return FrameworkConnection(inner, lambda: transaction.atomic(using=alias), owner=wrapper)


def provider() -> Connection:
    """The ``que_core.settings.connection_provider`` the app installs."""
    return connection()


def _quote(value: object) -> str:
    text = str(value)
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def worker_dsn(alias: str | None = None) -> str:
    """``QUE['DSN']``, else a libpq DSN for the database *alias* built from
    ``settings.DATABASES`` (name, user, password, host, port and the libpq
    parameters among its OPTIONS)."""
    configured = conf.get("DSN")
    if configured:
        return str(configured)
    wrapper = django_connection(alias)
    s = wrapper.settings_dict
    parts: dict[str, object] = {}
    if s.get("NAME"):
        parts["dbname"] = s["NAME"]
    for key, name in (("USER", "user"), ("PASSWORD", "password"), ("HOST", "host"),
                      ("PORT", "port")):
        if s.get(key):
            parts[name] = s[key]
    for key, value in (s.get("OPTIONS") or {}).items():
        if key in _LIBPQ_OPTIONS and value is not None:
            parts[key] = value
    return " ".join(f"{k}={_quote(v)}" for k, v in parts.items())


def worker_adapter(alias: str | None = None) -> str:
    """``QUE['ADAPTER']``, else the adapter of the driver Django uses."""
    configured = conf.get("ADAPTER")
    if configured:
        return str(configured)
    django_connection(alias)
    from django.db.backends.postgresql.psycopg_any import is_psycopg3

    return "psycopg" if is_psycopg3 else "psycopg2"
