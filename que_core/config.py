"""Process-wide settings of que-core."""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


class RunMode(enum.Enum):
    #: ``enqueue`` inserts the job; it waits in the table until a worker takes it.
    QUEUE = "queue"
    #: ``enqueue`` runs the job at once in the caller's thread (for tests);
    #: nothing is inserted and errors propagate to the caller.
    INLINE = "inline"


class _Settings:
    run_mode: RunMode = RunMode.QUEUE
    #: Keep jobs that return without resolving themselves (``finished_at``
    #: set) instead of deleting them. A Job class may override it.
    keep_finished: bool = False
    #: Called for a connection when ``enqueue`` gets no ``conn=`` (framework
    #: integrations set it). Returns a raw driver connection.
    connection_provider: Callable[[], Any] | None = None


settings = _Settings()


def set_run_mode(mode: RunMode | str) -> None:
    settings.run_mode = RunMode(mode)


@contextmanager
def run_mode(mode: RunMode | str) -> Iterator[None]:
    """Use *mode* inside the block, e.g. ``with run_mode("inline"): ...``."""
    before = settings.run_mode
    settings.run_mode = RunMode(mode)
    try:
        yield
    finally:
        settings.run_mode = before
