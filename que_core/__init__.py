"""que-core: a PostgreSQL job queue with advisory locks, for any Python driver."""

from que_core.hookspecs import hookimpl
from que_core.migrations import LATEST_VERSION, current_version, migrate

__all__ = ["LATEST_VERSION", "current_version", "hookimpl", "migrate"]
