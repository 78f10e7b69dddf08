"""que-core: a PostgreSQL job queue with advisory locks, for any Python driver."""

from que_core.config import RunMode, run_mode, set_run_mode, settings
from que_core.connection import Adapter, AsyncAdapter, AsyncConnection, Connection, Notification
from que_core.control import acancel, cancel
from que_core.hookspecs import hookimpl
from que_core.job import Job, abulk_enqueue, bulk_enqueue
from que_core.migrations import LATEST_VERSION, current_version, migrate
from que_core.results import aresult, result
from que_core.schedules import Schedule
from que_core.worker import Worker

__all__ = [
    "LATEST_VERSION",
    "Adapter",
    "AsyncAdapter",
    "AsyncConnection",
    "Connection",
    "Job",
    "Notification",
    "RunMode",
    "Schedule",
    "Worker",
    "abulk_enqueue",
    "acancel",
    "aresult",
    "bulk_enqueue",
    "cancel",
    "current_version",
    "hookimpl",
    "migrate",
    "result",
    "run_mode",
    "set_run_mode",
    "settings",
]
