"""procrastinate's driver for benchmarks/compare.py (see _driver.py), and the
app its worker runs:

    python -m procrastinate --app benchmarks.systems.procrastinate_app.app worker

at its defaults (concurrency 1, INFO logging: two lines per job, polling
every 5 s besides LISTEN/NOTIFY, finished jobs kept as 'succeeded'). The schema
comes from ``procrastinate --app ... schema --apply``. Enqueues are the
synchronous ``Task.defer`` (one transaction each) and ``Task.batch_defer``
(one statement) on psycopg 3, in ``app.open()``.
"""

from __future__ import annotations

import argparse
from typing import Any

from benchmarks.systems._driver import chunks, main, paced, timed
from benchmarks.systems.procrastinate_app import app, latency_job, noop


def kwargs(r: range) -> list[dict[str, Any]]:
    return [{"i": i} for i in r]


def fill(a: argparse.Namespace) -> None:
    with app.open():
        for r in chunks(a.n):
            noop.batch_defer(*kwargs(r))


def single(a: argparse.Namespace) -> float:
    with app.open():
        return timed(lambda: [noop.defer(i=i) for i in range(a.n)])


def bulk(a: argparse.Namespace) -> float:
    many = kwargs(range(a.n))
    with app.open():
        return timed(lambda: noop.batch_defer(*many))


def latency(a: argparse.Namespace) -> list[tuple[float, float]]:
    with app.open():
        return paced(a.n, a.spacing, lambda seq: latency_job.defer(seq=seq))


if __name__ == "__main__":
    main({"fill": fill, "single": single, "bulk": bulk, "latency": latency}, ("psycopg",))
