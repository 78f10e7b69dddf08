"""Must never be imported by a worker: job rows name it to check that
workers resolve ``job_class`` through the registry only."""

from __future__ import annotations

IMPORTED = True


class Boom:
    def __init__(self, *args: object, **kwargs: object) -> None:
        raise AssertionError("tests.reliability.canary.Boom was instantiated by a worker")
