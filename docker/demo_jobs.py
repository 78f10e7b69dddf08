"""Demo jobs for docker/compose.yaml.

The worker imports this module (``que work demo_jobs``); the enqueuer runs it
(``python -m demo_jobs --count 50 --every 5``) to enqueue a batch of jobs,
once or every few seconds. The job names are fixed, so both sides agree
however the module is loaded.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import sys
import time
from typing import Any

from que_core import Job, bulk_enqueue
from que_core.dsn import mask_password

log = logging.getLogger("demo_jobs")


class Greet(Job):
    """Quick: logs a line."""

    job_name = "demo_jobs.Greet"

    def run(self, name: str) -> None:
        log.info("hello, %s", name)


class Resize(Job):
    """Takes a moment, like real work."""

    job_name = "demo_jobs.Resize"

    def run(self, image_id: int, ms: int = 50) -> None:
        time.sleep(ms / 1000)


class Report(Job):
    """Runs on its own queue, at a lower priority."""

    job_name = "demo_jobs.Report"
    queue = "reports"
    priority = 200

    def run(self, day: str) -> None:
        time.sleep(0.2)


class Flaky(Job):
    """Fails on its first attempt, then succeeds on the retry."""

    job_name = "demo_jobs.Flaky"
    retry_interval = 3
    maximum_retry_count = 3

    def run(self, n: int) -> None:
        if self.error_count == 0:
            raise RuntimeError(f"flaky job {n}: first attempt fails on purpose")


def enqueue_batch(conn: Any, count: int, rng: random.Random) -> int:
    """Enqueue *count* jobs of the kinds above in one statement."""
    with bulk_enqueue(conn=conn) as jobs:
        for i in range(count):
            roll = rng.random()
            if roll < 0.4:
                Greet.enqueue(f"user {i}", conn=conn, tags=["demo"])
            elif roll < 0.8:
                Resize.enqueue(i, ms=rng.randint(10, 200), conn=conn, tags=["demo"])
            elif roll < 0.9:
                Flaky.enqueue(i, conn=conn, tags=["demo"])
            else:
                Report.enqueue(time.strftime("%Y-%m-%d"), conn=conn, tags=["demo"])
    return len(jobs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo_jobs", description=__doc__)
    parser.add_argument("--dsn", default=os.environ.get("QUE_DSN") or os.environ.get(
        "DATABASE_URL"), help="PostgreSQL DSN (default: $QUE_DSN or $DATABASE_URL)")
    parser.add_argument("--count", type=int, default=50, help="jobs per batch")
    parser.add_argument("--every", type=float, default=0,
                        help="seconds between batches (0: one batch, then exit)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: "
                        "%(message)s")
    if not args.dsn:
        parser.error("no database: pass --dsn or set DATABASE_URL")
    import psycopg

    rng = random.Random()
    while True:
        try:
            with psycopg.connect(args.dsn, autocommit=True, connect_timeout=5) as conn:
                n = enqueue_batch(conn, args.count, rng)
            log.info("enqueued %d demo jobs into %s", n, mask_password(args.dsn))
        except psycopg.Error as exc:
            log.warning("cannot enqueue: %s", mask_password(str(exc)))
            if not args.every:
                return 1
        if not args.every:
            return 0
        time.sleep(args.every)


if __name__ == "__main__":
    sys.exit(main())
