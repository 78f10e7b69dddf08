"""DSN helpers: passwords never reach a log line or an error message."""

from __future__ import annotations

import re

# postgresql://user:secret@host/db  and  key=value form: password=secret
_URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^:/@\s]*:)(?P<pw>[^@\s]*)(?=@)", re.I)
_KV_PASSWORD = re.compile(r"(?P<head>\bpassword\s*=\s*)(?P<pw>'(?:[^'\\]|\\.)*'|\S+)", re.I)
_QUERY_PASSWORD = re.compile(r"(?P<head>[?&]password=)(?P<pw>[^&\s]*)", re.I)

MASK = "****"


def mask_password(text: str) -> str:
    """*text* with every DSN password in it replaced by ``****``."""
    text = _URL_PASSWORD.sub(lambda m: m["head"] + (MASK if m["pw"] else ""), text)
    text = _QUERY_PASSWORD.sub(lambda m: m["head"] + MASK, text)
    return _KV_PASSWORD.sub(lambda m: m["head"] + MASK, text)
