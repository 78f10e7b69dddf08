"""DSN helpers: passwords never reach a log line or an error message."""

from __future__ import annotations

import re
from urllib.parse import unquote

from que_core.errors import CannotConnect, ConfigurationError

#: libpq's connection parameters whose values are secrets: those libpq itself
#: hides ("*" in PQconndefaults: password, sslpassword, oauth_client_secret)
#: and the SCRAM keys, which authenticate like a password.
SECRET_PARAMETERS = frozenset(
    {"password", "sslpassword", "oauth_client_secret", "scram_client_key", "scram_server_key"}
)
_SECRET_KEY = "|".join(sorted(SECRET_PARAMETERS, key=len, reverse=True))

# scheme://user:secret@host: the authority runs to the first "/" or space, and
# its user info to the LAST "@" in it, so an unencoded "@" in the password
# does not leave the rest of it in view.
_URL = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<authority>[^/\s]*)", re.I)
# key=value form: password=secret, sslpassword='quoted \' secret', password=a\ b;
# an unterminated quote hides everything after it.
_KV_SECRET = re.compile(
    rf"(?P<head>(?<![\w?&])(?:{_SECRET_KEY})\s*=\s*)"
    r"(?P<value>'(?:[^'\\]|\\.)*(?:'|\\?\Z)|(?:\\.|[^\s\\])+\\?|\\)",
    re.I | re.S,
)
# URL query parameters: ?sslpassword=secret&..., the key maybe percent-encoded.
_QUERY_PARAM = re.compile(r"(?P<head>[?&](?P<key>[^=&\s]*)=)(?P<value>[^&\s]*)")

MASK = "****"


def _mask_authority(m: re.Match[str]) -> str:
    authority = m["authority"]
    userinfo, at, hostport = authority.rpartition("@")
    user, colon, password = userinfo.partition(":")
    if not at or not colon or not password:
        return m[0]
    return f"{m['scheme']}{user}:{MASK}@{hostport}"


def _mask_query(m: re.Match[str]) -> str:
    if unquote(m["key"]).lower() in SECRET_PARAMETERS:
        return m["head"] + MASK
    return m[0]


def mask_password(text: str) -> str:
    """*text* with the secret of every DSN in it replaced by ``****``: the
    password of a URL's user info, and every :data:`SECRET_PARAMETERS` value,
    in ``key=value`` form (quoted or not) or as a URL query parameter."""
    if "://" not in text and "%" not in text:  # no URL, no encoded key: look for a key
        lowered = text.lower()
        if "pass" not in lowered and "secret" not in lowered and "scram" not in lowered:
            return text  # the usual log line: spared three regular expressions
    # key=value first: a quoted value may hold anything, a URL included.
    text = _KV_SECRET.sub(lambda m: m["head"] + MASK, text)
    text = _QUERY_PARAM.sub(_mask_query, text)
    return _URL.sub(_mask_authority, text)


def cannot_connect(dsn: str, message: str) -> CannotConnect:
    """An adapter's error for a server it could not reach or log in to: the
    DSN and the driver's *message*, their passwords masked."""
    return CannotConnect(f"cannot connect to {mask_password(dsn)}: {mask_password(message)}")


def cannot_read(dsn: str, message: str) -> ConfigurationError:
    """An adapter's error for a DSN its driver could not read (masked likewise)."""
    return ConfigurationError(f"cannot read the DSN {mask_password(dsn)}: {mask_password(message)}")


def parse_dsn(dsn: str) -> dict[str, str | int]:
    """The connection parameters in *dsn*, for drivers that take keyword arguments.

    Reads both libpq forms: the URL ``postgresql://user:pw@host:port/dbname?key=value``
    (``postgres://`` too; parts percent-decoded; query parameters win over the
    parts before ``?``) and ``key=value`` pairs (values may be single-quoted,
    with ``\\'`` and ``\\\\`` escapes; a later key wins). Keys keep libpq's names
    (``host``, ``port``, ``user``, ``password``, ``dbname``, ``sslmode``, ...)
    and only those present are returned; ``port`` is an int. A ``host`` that is
    a directory (it starts with ``/``) is a Unix socket directory: it is
    returned as ``unix_sock=<dir>/.s.PGSQL.<port>`` (port 5432 when not given)
    instead of ``host``.

    Raises :class:`~que_core.errors.ConfigurationError` for a DSN it cannot
    read; the message does not quote the DSN.
    """
    params = _parse_url(dsn) if is_url(dsn) else _parse_key_values(dsn)
    if "port" in params:
        try:
            params["port"] = int(params["port"])
        except ValueError:
            if _userinfo_cut(dsn):  # that "port" is a piece of the password: not shown
                raise _bad_dsn("the port is not a number") from None
            raise _bad_dsn(f"port {params['port']!r} is not a number") from None
    host = params.get("host")
    if isinstance(host, str):
        if "," in host:
            raise _bad_dsn(_SEVERAL_HOSTS)
        if host.startswith("/"):
            del params["host"]
            params["unix_sock"] = f"{host.rstrip('/')}/.s.PGSQL.{params.get('port', 5432)}"
    return params


_SEVERAL_HOSTS = "several hosts are not supported"


def is_url(dsn: str) -> bool:
    """Whether *dsn* is a URL (``postgresql://...``) rather than ``key=value``
    pairs, whose values may hold "://" too."""
    return _SCHEME.match(dsn) is not None


def _userinfo_cut(dsn: str) -> bool:
    """Whether an unencoded "?" in a URL's password ended its authority early
    (``postgresql://app:pw?x@host/db``): the user info, which libpq reads up
    to the first "/", holds an "@" that the part before the "?" lacks."""
    rest = dsn.partition("://")[2]
    return is_url(dsn) and "@" not in rest.partition("?")[0].partition("/")[0] \
        and "@" in rest.partition("/")[0]


def check_url_userinfo(dsn: str) -> None:
    """Raise :class:`~que_core.errors.ConfigurationError` when a URL *dsn*'s
    user info has an unencoded ``@``: libpq would split the password at the
    first one and name the rest of it, as a host, in its error message."""
    netloc = dsn.partition("://")[2].partition("?")[0].partition("/")[0]
    if is_url(dsn) and netloc.count("@") > 1:
        raise _bad_dsn("the user or password has an unencoded '@' (write it as %40)")


def _bad_dsn(why: str) -> ConfigurationError:
    # Not the DSN itself: a malformed one may hide a password from mask_password.
    return ConfigurationError(f"cannot read the DSN: {why}")


def _parse_url(dsn: str) -> dict[str, str | int]:
    scheme, _, rest = dsn.strip().partition("://")
    if scheme.lower() not in ("postgresql", "postgres"):
        raise _bad_dsn(f"unknown scheme {scheme!r} (expected postgresql://)")
    rest, _, query = rest.partition("?")
    netloc, _, path = rest.partition("/")
    params: dict[str, str | int] = {}
    check_url_userinfo(dsn)
    userinfo, at, hostport = netloc.rpartition("@")
    if at:
        user, colon, password = userinfo.partition(":")
        if user:
            params["user"] = unquote(user)
        if colon:
            params["password"] = unquote(password)
    if "," in hostport:
        raise _bad_dsn(_SEVERAL_HOSTS)
    if hostport.startswith("["):  # [IPv6]:port
        host, bracket, port = hostport[1:].partition("]")
        if not bracket or (port and not port.startswith(":")):
            raise _bad_dsn("malformed IPv6 host")
        port = port[1:]
    else:
        host, _, port = hostport.partition(":")
    if host:
        params["host"] = unquote(host)
    if port:
        params["port"] = port
    if path:
        params["dbname"] = unquote(path)
    for item in query.split("&"):
        if item:
            key, eq, value = item.partition("=")
            if not eq:
                raise _bad_dsn("a query parameter has no value")
            if not key:
                raise _bad_dsn("a query parameter has no name")
            params[unquote(key)] = unquote(value)
    return params


def _parse_key_values(dsn: str) -> dict[str, str | int]:
    params: dict[str, str | int] = {}
    i, n = 0, len(dsn)
    while True:
        while i < n and dsn[i].isspace():
            i += 1
        if i == n:
            return params
        start = i
        while i < n and dsn[i] != "=" and not dsn[i].isspace():
            i += 1
        key = dsn[start:i]
        while i < n and dsn[i].isspace():
            i += 1
        if i == n or dsn[i] != "=" or not key:
            raise _bad_dsn(f"expected key=value at character {start + 1}")
        i += 1
        while i < n and dsn[i].isspace():
            i += 1
        value: list[str] = []
        quoted = i < n and dsn[i] == "'"
        i += quoted
        while i < n:
            c = dsn[i]
            if c == "\\" and i + 1 < n:
                value.append(dsn[i + 1])
                i += 2
                continue
            if (quoted and c == "'") or (not quoted and c.isspace()):
                break
            value.append(c)
            i += 1
        if quoted:
            if i == n:
                raise _bad_dsn(f"unterminated quoted value for {key!r}")
            i += 1  # the closing quote
        params[key] = "".join(value)


_SCHEME = re.compile(r"^\s*([A-Za-z][A-Za-z0-9+.-]*)://")
_SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


def check_dsn(dsn: str, source: str = "") -> str:
    """*dsn*, checked, for connecting: raise what is wrong with it now rather
    than as a connection failure later.

    A SQLAlchemy-style ``postgresql+psycopg://`` (any ``+driver``) URL is
    accepted as the ``postgresql://`` URL it stands for: which driver que-core
    uses is the adapter's business. Any other scheme (``mysql://``), a DSN that
    cannot be read, a port that is not a number or an unknown ``sslmode`` is a
    :class:`~que_core.errors.ConfigurationError` that says what is wrong and,
    with *source* (``"flag --dsn"``, ``"env DATABASE_URL"``), where the DSN
    came from; it does not quote the DSN (a malformed one may hide its
    password from :func:`mask_password`). Option names are left to the driver.
    """
    where = f" (the DSN from {source})" if source else ""
    scheme = _SCHEME.match(dsn)
    if scheme:
        name = scheme.group(1)
        base, plus, _driver = name.lower().partition("+")
        if base not in ("postgresql", "postgres"):
            raise ConfigurationError(
                f"the DSN is not PostgreSQL's: its scheme is {name + '://'!r}; que-core needs "
                f"postgresql://... (or key=value pairs){where}"
            )
        if plus:
            dsn = "postgresql" + dsn[scheme.end(1) :]
    try:
        params = parse_dsn(dsn)
    except ConfigurationError as exc:
        if _SEVERAL_HOSTS not in str(exc):  # libpq takes several; only pg8000 refuses them
            raise ConfigurationError(f"{exc}{where}") from None
        params = {}
    port = params.get("port")
    if isinstance(port, int) and not 0 < port < 65536:
        raise ConfigurationError(f"cannot read the DSN: port {port} is out of range{where}")
    sslmode = params.get("sslmode")
    if sslmode is not None and sslmode not in _SSLMODES:
        raise ConfigurationError(
            f"cannot read the DSN: sslmode {sslmode!r} is not one of {', '.join(_SSLMODES)}{where}"
        )
    return dsn
