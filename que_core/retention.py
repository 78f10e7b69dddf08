"""Retention: the jobs kept after they ended are deleted once old enough.

Kept jobs are those finished with ``keep_finished`` (``finished_at`` set),
expired ones (out of retries, or expired by hand) and cancelled ones (which
are expired ones: ``expired_at`` set, see migrations/7.6). Each kind is
deleted once its ``finished_at`` / ``expired_at`` is older than its age
(the defaults are in :mod:`que_core.options`):

* finished: 7 days. A finished job is kept only because someone asked for
  it (``keep_finished``), to see what ran lately: a week covers "what
  happened last weekend" without keeping every job of a busy queue for ever.
* expired and cancelled: 30 days. They failed for good, or someone stopped
  them: someone may still want to read the error or retry them (``que jobs
  retry``), which takes longer to get round to.

None keeps them for ever (Que's behaviour). A worker (:class:`Janitor`)
prunes every :data:`PRUNE_EVERY` seconds, one worker process at a time: a
session advisory lock elects it for the round, so that ten workers do not
delete the same rows ten times over. It deletes :data:`BATCH` rows per
transaction, oldest first, through the partial indexes of migrations/7.6,
skipping rows someone has locked, and pauses between batches for as long as
the last one took: nothing it does holds a lock that a worker waits for
(workers never touch ended rows), and it takes at most half of one core.
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from que_core.connection import Connection
from que_core.errors import DatabaseError
from que_core.sql import q

log = logging.getLogger("que_core.retention")

DAY = 86400.0
PRUNE_EVERY = 60.0
BATCH = 1000

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": DAY, "w": 7 * DAY}
_AGE = re.compile(r"\s*([0-9]+(?:\.[0-9]*)?)\s*([smhdw]?)\s*", re.I)
_FOREVER = {"never", "forever", "off", "none"}


def parse_age(value: Any) -> float | None:
    """An age as seconds: ``"7d"``, ``"12h"``, ``"30m"``, ``"45s"``, ``"2w"``,
    a number of seconds, or ``"never"`` (None: keep for ever). Raises
    ValueError naming the value otherwise."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not an age")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        text = str(value).strip().lower()
        if text in _FOREVER:
            return None
        m = _AGE.fullmatch(text)
        if m is None:
            raise ValueError(
                f"{value!r} is not an age: give a number and a unit (s, m, h, d, w), such as "
                "7d or 12h, or never")
        seconds = float(m.group(1)) * _UNITS[m.group(2) or "s"]
    if not 0 < seconds < float("inf"):
        raise ValueError(f"{value!r} is not an age: it must be more than 0 (or never)")
    return seconds


def format_age(seconds: float | None) -> str:
    """``604800.0`` -> ``"7d"``; None -> ``"never"``."""
    if seconds is None:
        return "never"
    for unit in ("w", "d", "h", "m"):
        if seconds % _UNITS[unit] == 0:
            return f"{int(seconds // _UNITS[unit])}{unit}"
    return f"{seconds:g}s"


@dataclass(frozen=True)
class Retention:
    """How long each kind of kept job stays (seconds; None: for ever)."""

    finished: float | None
    expired: float | None

    @classmethod
    def of(cls, finished: Any, expired: Any) -> Retention:
        """From ages as settings give them (seconds, ``"7d"``, ``"never"``, None);
        a bad one is a ConfigurationError naming it."""
        from que_core.errors import ConfigurationError

        ages = []
        for name, value in (("retain_finished", finished), ("retain_expired", expired)):
            try:
                ages.append(parse_age(value))
            except ValueError as exc:
                raise ConfigurationError(f"{name}: {exc}") from None
        return cls(*ages)

    @property
    def enabled(self) -> bool:
        return self.finished is not None or self.expired is not None


@dataclass
class Pruned:
    """What one prune deleted."""

    finished: int = 0
    expired: int = 0
    batches: int = 0
    seconds: float = 0.0

    @property
    def total(self) -> int:
        return self.finished + self.expired


def prune(conn: Connection, retention: Retention, *, batch: int = BATCH,
          pause: Callable[[float], object] | None = None,
          stop: threading.Event | None = None) -> Pruned:
    """Delete the kept jobs older than *retention* says, *batch* rows per
    transaction, until none is left. *pause* (given how long the batch
    took) is called between batches; *stop* ends it early."""
    out = Pruned()
    start = time.monotonic()
    kinds = (("finished", "prune_finished", retention.finished),
             ("expired", "prune_expired", retention.expired))
    for kind, query, age in kinds:
        if age is None:
            continue
        while stop is None or not stop.is_set():
            began = time.monotonic()
            with conn.transaction():
                # Nothing listens to Que's que_state channel: spare a NOTIFY per row.
                conn.execute(q("set_skip_notify"), ("true",))
                ((count,),) = conn.execute(q(query), (age, batch))
            out.batches += 1
            setattr(out, kind, getattr(out, kind) + int(count))
            if count < batch:
                break
            if pause is not None:
                pause(time.monotonic() - began)
    conn.execute(q("prune_cancel_requests"))
    out.seconds = time.monotonic() - start
    return out


class Janitor(threading.Thread):
    """Prunes every *interval* seconds (the first time a random part of it
    after the start, so that workers started together do not all try at
    once), when this worker process wins the election."""

    def __init__(self, connect: Callable[[], Connection], retention: Retention,
                 interval: float, stop_event: threading.Event) -> None:
        super().__init__(name="que-janitor", daemon=True)
        self._connect = connect
        self.retention = retention
        self.interval = interval
        self._stop_event = stop_event
        #: The last round this process did (None: none yet, or another won).
        self.last: Pruned | None = None

    def run(self) -> None:
        wait = self.interval * random.uniform(0.1, 1.0)
        while not self._stop_event.wait(wait):
            try:
                self.round()
            except DatabaseError as exc:
                log.warning("retention: pruning failed (%s); trying again in %g s", exc,
                            self.interval)
            except Exception:
                log.exception("retention: unexpected error; trying again in %g s",
                              self.interval)
            wait = self.interval * random.uniform(0.9, 1.1)

    def round(self) -> Pruned | None:
        """One round: prune if no other worker is pruning now."""
        conn = self._connect()
        try:
            ((won,),) = conn.execute(q("retention_lock"))
            if not won:
                return None
            try:
                pruned = prune(conn, self.retention, pause=self._stop_event.wait,
                               stop=self._stop_event)
            finally:
                if not conn.closed:
                    conn.execute(q("retention_unlock"))
        finally:
            conn.close()
        self.last = pruned
        if pruned.total:
            log.info("retention: deleted %s finished and %s expired or cancelled job(s) in "
                     "%.2f s (%s batches)", pruned.finished, pruned.expired, pruned.seconds,
                     pruned.batches, extra={"que_event": "pruned", "finished": pruned.finished,
                                            "expired": pruned.expired})
        return pruned
