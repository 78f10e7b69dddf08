"""Reconnecting with capped exponential backoff."""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from typing import TypeVar

from que_core.errors import ConnectionLost

T = TypeVar("T")


def retry_connect(
    connect: Callable[[], T],
    stop: threading.Event,
    log: logging.Logger,
    what: str,
    first: float = 0.1,
    cap: float = 5.0,
) -> T | None:
    """Call *connect* until it succeeds; None if *stop* is set first."""
    delay = first
    while not stop.is_set():
        try:
            return connect()
        except ConnectionLost as exc:
            log.warning("%s: cannot connect (%s); retrying in %.1fs", what, exc, delay)
            stop.wait(delay * random.uniform(0.8, 1.2))
            delay = min(cap, delay * 2)
    return None
