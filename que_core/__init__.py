"""que-core: a PostgreSQL job queue with advisory locks, for any Python driver."""

from que_core.hookspecs import hookimpl

__all__ = ["hookimpl"]
