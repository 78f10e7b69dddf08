"""Every setting of ``que``, and the worker's options with their defaults: defined here once.

Each :class:`Spec` is one setting: its ``[tool.que]`` key, flag, environment
variables, type and default. :data:`WORKER_SPECS` are the options that shape a
worker. :class:`~que_core.Worker` takes its defaults from them; ``que work``,
``flask que work`` and ``manage.py que_work`` make their flags from them;
``[tool.que]``, ``$QUE_*``, Django's ``QUE`` (key :attr:`Spec.django_key`)
and Flask's ``app.config`` (``"QUE_" + django_key``) are read through them.

A new worker option is one more :class:`Spec` in :data:`WORKER_SPECS` (with
``worker_arg`` when :class:`~que_core.Worker` takes it): every surface above
then has it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import click

from que_core.dispatch import ANY_PRIORITY
from que_core.errors import ConfigurationError

LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError("expected true or false")


def _to_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("expected an integer")
    if isinstance(value, int):
        return value
    return int(str(value).strip())


def _to_float(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("expected a number")
    return float(value) if isinstance(value, (int, float)) else float(str(value).strip())


def _to_list(value: Any) -> list[str]:
    if isinstance(value, (list, tuple)):
        return [str(v).strip() for v in value if str(v).strip()]
    return [part.strip() for part in str(value).split(",") if part.strip()]


def _to_str(value: Any) -> str:
    if isinstance(value, (dict, list)):
        raise ValueError("expected a string")
    return str(value)


def _choice(*choices: str) -> Callable[[Any], str]:
    def convert(value: Any) -> str:
        text = str(value).strip().lower()
        if text not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}")
        return text

    return convert


def _positive(convert: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        out = convert(value)
        if out <= 0:
            raise ValueError("must be positive")
        return out

    return check


def _non_negative(convert: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        out = convert(value)
        if out < 0:
            raise ValueError("must not be negative")
        return out

    return check


def _port(value: Any) -> int:
    port = _to_int(value)
    if not 0 <= port <= 65535:
        raise ValueError("must be a TCP port number (0-65535)")
    return port


def _age(value: Any) -> str:
    """A retention age, checked, as text: ``"7d"``, ``"12h"``, ``"never"``."""
    from que_core.retention import format_age, parse_age

    return format_age(parse_age(value))


def parse_priorities(text: str) -> list[int | None]:
    """``"10,30,50,any,any"`` -> ``[10, 30, 50, None, None]``."""
    out: list[int | None] = []
    for part in text.split(","):
        part = part.strip()
        if part.lower() == "any":
            out.append(None)
            continue
        try:
            value = int(part)
        except ValueError:
            raise ConfigurationError(
                f"worker priority {part!r} is neither an integer nor 'any'"
            ) from None
        if not -32768 <= value <= ANY_PRIORITY:
            raise ConfigurationError(f"worker priority {value} is outside the smallint range")
        out.append(value)
    return out


def _priorities_arg(value: Any) -> Any:
    """A priorities setting as Worker takes it: text is parsed (empty: the default),
    a list (Django's) kept."""
    if isinstance(value, str):
        return parse_priorities(value) if value else None
    return value


@dataclass(frozen=True)
class Spec:
    """One setting: its ``[tool.que]`` key, flag, environment variables and type."""

    name: str
    flag: str
    env: tuple[str, ...]
    convert: Callable[[Any], Any]
    default: Any
    help: str
    secret: bool = False
    #: A worker option's short flag (``-w``), and whether its flag repeats.
    short: str | None = None
    multiple: bool = False
    #: The click type of the flag (None: a string, or a --x/--no-x switch).
    click_type: Any = None
    #: The keyword of :class:`~que_core.Worker` it sets, and how its value becomes that.
    worker_arg: str | None = None
    to_worker: Callable[[Any], Any] | None = None
    #: Its key in Django's ``QUE`` setting (Flask: ``app.config["QUE_" + key]``).
    django_key: str | None = None


CONNECTION_SPECS: tuple[Spec, ...] = (
    Spec("dsn", "--dsn", ("QUE_DSN", "DATABASE_URL"), _to_str, None,
         "PostgreSQL connection string", secret=True),
    Spec("adapter", "--adapter", ("QUE_ADAPTER",), _to_str, None,
         "adapter name (psycopg, psycopg2, pg8000, ...); default: the installed one"),
    Spec("embedded", "--embedded", ("QUE_EMBEDDED",), _to_bool, False,
         "use the embedded PostgreSQL (pgserver) instead of a DSN"),
    Spec("embedded_dir", "--embedded-dir", ("QUE_EMBEDDED_DIR",), _to_str, None,
         "data directory of the embedded PostgreSQL"),
    Spec("connect_timeout", "--connect-timeout", ("QUE_CONNECT_TIMEOUT",),
         _non_negative(_to_int), 5,
         "seconds to wait for a connection (added to the DSN unless it sets one; 0: no limit)"),
)

#: The options that shape a worker, in the order ``que work --help`` lists them.
WORKER_SPECS: tuple[Spec, ...] = (
    Spec("queues", "--queue", ("QUE_QUEUES",), _to_list, ["default"],
         "queues to work, in order", short="-q", multiple=True,
         worker_arg="queues", to_worker=list, django_key="QUEUES"),
    Spec("workers", "--workers", ("QUE_WORKERS",), _positive(_to_int), 6,
         "worker threads", short="-w", click_type=click.IntRange(min=1),
         worker_arg="worker_count", django_key="WORKER_COUNT"),
    Spec("processes", "--processes", ("QUE_PROCESSES",), _positive(_to_int), 1,
         "worker processes, each with its --workers threads (2 or more: under a supervisor "
         "that restarts them)", click_type=click.IntRange(min=1), django_key="PROCESSES"),
    Spec("priorities", "--priorities", ("QUE_PRIORITIES",), _to_str, None,
         "per-thread priority thresholds, e.g. 10,30,50,any,any,any", short="-p",
         worker_arg="worker_priorities", to_worker=_priorities_arg,
         django_key="WORKER_PRIORITIES"),
    Spec("poll_interval", "--poll-interval", ("QUE_POLL_INTERVAL",), _positive(_to_float), 5.0,
         "seconds between polls", short="-i", click_type=click.FloatRange(min=0.001),
         worker_arg="poll_interval", django_key="POLL_INTERVAL"),
    Spec("batch_size", "--batch-size", ("QUE_BATCH_SIZE",), _positive(_to_int), 20,
         "the most jobs a worker thread claims at once (fewer when they take long)",
         click_type=click.IntRange(min=1), worker_arg="batch_size", django_key="BATCH_SIZE"),
    Spec("shutdown_timeout", "--shutdown-timeout", ("QUE_SHUTDOWN_TIMEOUT",),
         _non_negative(_to_float), None,
         "seconds running jobs get to finish on SIGTERM/SIGINT (default: wait)",
         click_type=click.FloatRange(min=0), django_key="SHUTDOWN_TIMEOUT"),
    Spec("listen", "--listen/--no-listen", ("QUE_LISTEN",), _to_bool, True,
         "LISTEN for new jobs (otherwise poll only)", worker_arg="listen",
         django_key="LISTEN"),
    Spec("max_run_time", "--max-run-time", ("QUE_MAX_RUN_TIME",), _positive(_to_float), None,
         "seconds a job may run before it is stopped and the attempt counted as an error, "
         "for job classes without a max_run_time of their own (default: no limit)",
         click_type=click.FloatRange(min=0, min_open=True), worker_arg="max_run_time",
         django_key="MAX_RUN_TIME"),
    Spec("retain_finished", "--retain-finished", ("QUE_RETAIN_FINISHED",), _age, "7d",
         "how long finished jobs (keep_finished) are kept before they are deleted: an age "
         "(30m, 12h, 7d, 2w) or never", worker_arg="retain_finished",
         django_key="RETAIN_FINISHED"),
    Spec("retain_expired", "--retain-expired", ("QUE_RETAIN_EXPIRED",), _age, "30d",
         "how long expired and cancelled jobs are kept before they are deleted: an age or "
         "never", worker_arg="retain_expired", django_key="RETAIN_EXPIRED"),
    Spec("async_concurrency", "--async-concurrency", ("QUE_ASYNC_CONCURRENCY",),
         _non_negative(_to_int), 10,
         "async def jobs run at once on the worker's event loop (0: none)",
         click_type=click.IntRange(min=0), worker_arg="async_concurrency",
         django_key="ASYNC_CONCURRENCY"),
    Spec("metrics_port", "--metrics-port", ("QUE_METRICS_PORT",), _port, None,
         "serve Prometheus metrics on this port (0: any free port)",
         click_type=click.IntRange(0, 65535)),
    Spec("metrics_host", "--metrics-host", ("QUE_METRICS_HOST",), _to_str, "127.0.0.1",
         "address the metrics server binds (0.0.0.0: every interface)"),
)

OTHER_SPECS: tuple[Spec, ...] = (
    Spec("modules", "MODULES", ("QUE_MODULES",), _to_list, [],
         "modules to import before working: the ones defining your Job classes"),
    Spec("log_level", "--log-level", ("QUE_LOG_LEVEL",), _choice(*LOG_LEVELS), "info",
         "log level"),
    Spec("log_format", "--log-format", ("QUE_LOG_FORMAT",), _choice(*LOG_FORMATS), "text",
         "log format: text, or json (one object per line)"),
)

#: Every setting, in the order ``que config`` lists them.
SPECS: tuple[Spec, ...] = (*CONNECTION_SPECS, *WORKER_SPECS, *OTHER_SPECS)
SPECS_BY_NAME = {s.name: s for s in SPECS}
#: Each setting's default, by name.
DEFAULTS: dict[str, Any] = {s.name: s.default for s in SPECS}


def worker_kwargs(values: Mapping[str, Any]) -> dict[str, Any]:
    """:class:`~que_core.Worker`'s keyword arguments from worker option values by
    setting name; options missing from *values*, or None there, are left out."""
    out: dict[str, Any] = {}
    for spec in WORKER_SPECS:
        value = values.get(spec.name)
        if spec.worker_arg is None or value is None:
            continue
        arg = spec.to_worker(value) if spec.to_worker else value
        if arg is not None:
            out[spec.worker_arg] = arg
    return out
