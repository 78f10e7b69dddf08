"""The command line that every system's driver shares. Standard library only:
it runs under que-core's interpreter and under the peers' venv.

    python -m benchmarks.systems.NAME_bench COMMAND N [--driver D] [--spacing S]

The database is $DATABASE_URL. Commands (each prints one JSON value on stdout):

* ``fill N``: insert N no-op jobs in statements of 10,000 (for a drain); null.
* ``single N``: enqueue N no-op jobs one at a time, one transaction each; seconds.
* ``bulk N``: enqueue N no-op jobs in one transaction; seconds.
* ``latency N --spacing S``: enqueue N latency jobs one at a time, S seconds
  apart, each its own transaction; time.time() just before and just after
  each enqueue, a list of pairs.

Only the enqueues are timed, not the connection or building the argument lists.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

CHUNK = 10_000  # jobs per statement when filling a queue

Command = Callable[[argparse.Namespace], Any]


def dsn() -> str:
    return os.environ["DATABASE_URL"]


def chunks(n: int) -> Iterator[range]:
    for start in range(0, n, CHUNK):
        yield range(start, min(n, start + CHUNK))


def timed(work: Callable[[], object]) -> float:
    t = time.perf_counter()
    work()
    return time.perf_counter() - t


async def atimed(work: Callable[[], Awaitable[object]]) -> float:
    t = time.perf_counter()
    await work()
    return time.perf_counter() - t


def paced(n: int, spacing: float, enqueue: Callable[[int], object]) -> list[tuple[float, float]]:
    """Call enqueue(seq) for seq in range(n) on a fixed schedule; return the
    host time just before and just after each call."""
    times: list[tuple[float, float]] = []
    t0 = time.monotonic()
    for seq in range(n):
        delay = t0 + seq * spacing - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        before = time.time()
        enqueue(seq)
        times.append((before, time.time()))
    return times


def main(commands: dict[str, Command], drivers: tuple[str, ...]) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("command", choices=sorted(commands))
    p.add_argument("n", type=int)
    p.add_argument("--driver", choices=drivers, default=drivers[0],
                   help="the database driver that enqueues (single, bulk)")
    p.add_argument("--kind", default="noop", help="the kind of job to fill")
    p.add_argument("--spacing", type=float, default=0.02)
    args = p.parse_args()
    print(json.dumps(commands[args.command](args)))
