"""``async def`` job classes of the tests; worker subprocesses import this
module (``que work conformance.jobs tests.ajobs``).

In the test process, the :func:`registered` fixture of a test module puts
them in the registry and takes them out again afterwards: an in-process
worker of another test must not start an event loop for them.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from conformance.jobs import LOG_INSERT, STARTS
from que_core import Job


async def arecord(job: Job, tag: Any, event: str) -> None:
    await job.db.execute(LOG_INSERT, (job.id, str(tag), event, os.getpid()))


class AsyncRecordJob(Job):
    """Writes its effect and destroys itself in one transaction."""

    async def run(self, tag: Any) -> None:
        async with self.atransaction():
            await arecord(self, tag, "ran")
            await self.adestroy()


class AsyncPlainJob(Job):
    """Writes which driver its session is, and returns."""

    async def run(self, tag: Any) -> None:
        await arecord(self, tag, type(self.conn).__module__.partition(".")[0])


class AsyncSleepJob(Job):
    """Logs its start, awaits *seconds*, then logs its end and destroys
    itself in one transaction."""

    async def run(self, tag: Any, seconds: float) -> None:
        await arecord(self, tag, "start")
        await asyncio.sleep(seconds)
        async with self.atransaction():
            await arecord(self, tag, "done")
            await self.adestroy()


class AsyncHangFirstJob(Job):
    """Hangs (awaiting) on its first run; quick on any later run."""

    async def run(self, tag: Any) -> None:
        ((starts,),) = await self.db.execute(STARTS, (self.id,))
        await arecord(self, tag, "start")
        if starts == 0:
            await asyncio.sleep(120)
        async with self.atransaction():
            await arecord(self, tag, "done")
            await self.adestroy()


class AsyncBlockingJob(Job):
    """Blocks the event loop: time.sleep inside async def."""

    async def run(self, tag: Any, seconds: float) -> None:
        time.sleep(seconds)
        await arecord(self, tag, "ran")


class AsyncResolveJob(Job):
    """Resolves itself with the async form named *how*."""

    retry_interval = 0

    async def run(self, tag: Any, how: str) -> None:
        async with self.atransaction():
            await arecord(self, tag, how)
            if how == "retry_in":
                await self.aretry_in(3600)
            else:
                await getattr(self, "a" + how)()


class AsyncAddJob(Job):
    keep_result = True

    async def run(self, a: Any, b: Any) -> Any:
        await asyncio.sleep(0)
        return a + b


class AsyncTimesOut(Job):
    """Awaits far longer than its max_run_time."""

    max_run_time = 1
    retry_interval = 3600

    async def run(self, tag: Any, sql: bool = False) -> None:
        await arecord(self, tag, "start")
        if sql:
            async with self.atransaction():
                await self.db.execute("UPDATE que_jobs SET args = args WHERE id = %s", (self.id,))
                await self.db.execute("SELECT pg_sleep(30)")
        else:
            await asyncio.sleep(30)
        await arecord(self, tag, "woke")


class AsyncPolite(Job):
    """Checks self.cancelled while it awaits, and returns by itself."""

    async def run(self, tag: Any) -> None:
        await arecord(self, tag, "start")
        until = time.monotonic() + 60
        while time.monotonic() < until and not self.cancelled:
            await asyncio.sleep(0.01)
        await arecord(self, tag, "saw cancel" if self.cancelled else "not cancelled")


CLASSES: list[type[Job]] = [AsyncRecordJob, AsyncPlainJob, AsyncSleepJob, AsyncHangFirstJob,
                            AsyncBlockingJob, AsyncResolveJob, AsyncAddJob, AsyncTimesOut,
                            AsyncPolite]
