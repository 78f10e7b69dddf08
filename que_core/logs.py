"""Logging for the ``que`` command: stdlib :mod:`logging`, text or JSON lines.

que-core logs under the ``que_core`` logger and its children
(``que_core.worker``, ``que_core.listener``, ...) and never prints. Each job
event (worked, retried, errored, expired) is one line at INFO (WARNING for
errors) whose record carries these ``extra`` fields:

``que_event``, ``job_id``, ``job_class``, ``queue``, ``duration`` (seconds),
``outcome`` and, for errors, ``error`` and ``retry_in``.

:func:`setup` installs a handler on the root logger, so your jobs' own log
lines come out the same way. Libraries embedding que-core configure logging
their own way; :class:`JsonFormatter` and :class:`TextFormatter` are usable
on any handler. Both mask the password of every DSN in a line, and keep
each record on its line: controls and line separators from job rows are
escaped (see :mod:`que_core.printable`).
"""

from __future__ import annotations

import logging
import sys
import time
from datetime import datetime, timezone
from typing import IO, Any

from que_core.dsn import mask_password
from que_core.printable import dumps, escape, escape_lines

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: With several worker processes (``que work --processes``): whose line it is.
TEXT_FORMAT_PID = "%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s"

# What every LogRecord has; anything else on a record came through ``extra``.
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD}


def _masked(value: Any) -> Any:
    if isinstance(value, str):
        return mask_password(value)
    if isinstance(value, (int, float, bool)) or value is None:
        return value
    return mask_password(str(value))


class TextFormatter(logging.Formatter):
    """``2024-05-01 12:00:00,123 INFO que_core.worker: job worked: ...``, passwords masked.

    A record is one line: controls and line separators in the message are
    escaped (``\n``, ``\x1b``); a traceback follows on lines of its own,
    escaped and indented, so that no text from a job row can pass for a record.
    """

    def __init__(self, fmt: str = TEXT_FORMAT) -> None:
        super().__init__(fmt)
        self._second = -1
        self._stamp = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        # logging's default, with the seconds' part kept while the second lasts:
        # a worker writes thousands of lines a second.
        if datefmt is not None:
            return super().formatTime(record, datefmt)
        second = int(record.created)
        if second != self._second:
            self._stamp = time.strftime(self.default_time_format, self.converter(second))
            self._second = second
        return f"{self._stamp},{int(record.msecs):03d}"

    def format(self, record: logging.LogRecord) -> str:
        # logging.Formatter.format, with the message escaped.
        record.message = escape(record.getMessage())
        if self.usesTime():
            record.asctime = self.formatTime(record, self.datefmt)
        text = self.formatMessage(record)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            text += "\n" + record.exc_text
        if record.stack_info:
            text += "\n" + self.formatStack(record.stack_info)
        return mask_password(escape_lines(text))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts`` (UTC, ISO 8601), ``level``, ``logger``,
    ``message`` (and ``pid`` with *pid*), the record's ``extra`` fields and
    ``exc_info`` (the traceback) when there is one. Passwords are masked in
    every string."""

    def __init__(self, pid: bool = False) -> None:
        super().__init__()
        self.pid = pid

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": mask_password(record.getMessage()),
        }
        if self.pid:
            out["pid"] = record.process
        for key, value in _extras(record).items():
            out.setdefault(key, _masked(value))
        if record.exc_info:
            out["exc_info"] = mask_password(self.formatException(record.exc_info))
        elif record.exc_text:
            out["exc_info"] = mask_password(record.exc_text)
        if record.stack_info:
            out["stack_info"] = mask_password(self.formatStack(record.stack_info))
        return dumps(out)


_installed: logging.Handler | None = None


def setup(level: str = "info", fmt: str = "text", stream: IO[str] | None = None,
          pid: bool = False) -> logging.Handler:
    """Send log records to *stream* (stderr) as *fmt* (``text`` or ``json``)
    from *level* up, each with its process id if *pid*. Calling it again
    replaces the handler it installed."""
    global _installed
    handler = logging.StreamHandler(stream or sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter(pid))
    elif fmt == "text":
        handler.setFormatter(TextFormatter(TEXT_FORMAT_PID if pid else TEXT_FORMAT))
    else:
        raise ValueError(f"unknown log format {fmt!r} (expected text or json)")
    root = logging.getLogger()
    if _installed is not None:
        root.removeHandler(_installed)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper()))
    _installed = handler
    return handler
