"""The pytest plugin behind ``python -m conformance``.

Adds ``--adapter`` (repeatable or comma-separated; default: every installed
adapter) and ``--dsn`` (default: ``$QUE_TEST_DSN``, ``$DATABASE_URL``, else the
embedded server), provides the host fixtures ``adapter`` (parametrised over
the chosen adapters) and ``server_dsn``, registers the suite's fixtures, and
ends the run with a summary per adapter: passed, failed, declared-unsupported.
``async_adapter`` is parametrised the same way: each adapter's sync tests and
async tests run, and a side it lacks is declared unsupported.

Use it as ``pytest -p conformance.plugin --adapter NAME path/to/conformance``.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

import pytest

from conformance import DECLARED_UNSUPPORTED, async_side, sync_side
from conformance.fixtures import aconn, aconnect, adb_dsn, conn, connect, db_dsn
from que_core import plugins
from que_core.connection import Adapter, AsyncAdapter
from que_core.testing import databases

__all__ = [
    "aconn",
    "aconnect",
    "adapter",
    "adb_dsn",
    "async_adapter",
    "conn",
    "connect",
    "db_dsn",
    "server_dsn",
]
#: The host fixtures the adapter names parametrise.
SIDES = ("adapter", "async_adapter")

_ADAPTERS = pytest.StashKey[list[str]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("que-conformance", "que-core adapter conformance")
    group.addoption(
        "--adapter",
        action="append",
        default=[],
        metavar="NAME",
        help="adapter to test (an entry point name in que.adapters); "
        "repeat or separate by commas; default: every installed adapter",
    )
    group.addoption(
        "--dsn",
        default=None,
        help="PostgreSQL server to create test databases on "
        "(default: $QUE_TEST_DSN, $DATABASE_URL, else the embedded server)",
    )


def pytest_configure(config: pytest.Config) -> None:
    names = [n.strip() for opt in config.getoption("adapter") for n in opt.split(",")]
    installed = plugins.installed_adapters()
    names = [n for n in names if n] or sorted(installed)
    for name in names:
        if name not in installed:
            raise pytest.UsageError(
                f"adapter {name!r} is not installed "
                f"(installed adapters: {', '.join(sorted(installed)) or 'none'})"
            )
    if not names:
        raise pytest.UsageError("no que-core adapter is installed")
    config.stash[_ADAPTERS] = names
    config.pluginmanager.register(Summary(), "que-conformance-summary")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    names = metafunc.config.stash[_ADAPTERS]
    for side in SIDES:
        if side in metafunc.fixturenames:
            metafunc.parametrize(side, names, indirect=True, scope="session", ids=names)


@pytest.fixture(scope="session")
def adapter(request: pytest.FixtureRequest) -> Adapter:
    """The sync side of the adapter under test."""
    return sync_side(request.param)


@pytest.fixture(scope="session")
def async_adapter(request: pytest.FixtureRequest) -> AsyncAdapter:
    """The async side of the adapter under test."""
    return async_side(request.param)


@pytest.fixture(scope="session")
def server_dsn(request: pytest.FixtureRequest) -> str:
    """The server the test databases are created on."""
    dsn: str | None = request.config.getoption("dsn")
    return dsn or databases.server_dsn()


class Summary:
    """Counts results per adapter; prints them at the end of the run."""

    def __init__(self) -> None:
        self.adapter_of: dict[str, str] = {}
        self.outcome: dict[str, str] = {}
        self.declared: dict[str, Counter[str]] = defaultdict(Counter)

    def pytest_itemcollected(self, item: pytest.Item) -> None:
        callspec = getattr(item, "callspec", None)
        for side in SIDES:
            if callspec is not None and side in callspec.params:
                self.adapter_of[item.nodeid] = str(callspec.params[side])

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        name = self.adapter_of.get(report.nodeid, "(no adapter)")
        if report.failed:
            self.outcome[report.nodeid] = "failed"
        elif self.outcome.get(report.nodeid) == "failed":
            pass
        elif report.skipped:
            reason = _skip_reason(report)
            if reason.startswith(DECLARED_UNSUPPORTED):
                self.outcome[report.nodeid] = "declared-unsupported"
                self.declared[name][reason] += 1
            else:
                self.outcome[report.nodeid] = "skipped"
        elif report.when == "call":
            self.outcome[report.nodeid] = "passed"

    def counts(self) -> dict[str, Counter[str]]:
        per_adapter: dict[str, Counter[str]] = defaultdict(Counter)
        for nodeid, outcome in self.outcome.items():
            per_adapter[self.adapter_of.get(nodeid, "(no adapter)")][outcome] += 1
        return per_adapter

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        per_adapter = self.counts()
        if not per_adapter:
            return
        columns = ["passed", "failed", "declared-unsupported", "skipped"]
        width = max(len("adapter"), *(len(name) for name in per_adapter))
        terminalreporter.section("que-core adapter conformance")
        terminalreporter.write_line(
            "adapter".ljust(width) + "".join(f"  {c:>{len(c)}}" for c in columns)
        )
        for name in sorted(per_adapter):
            counts = per_adapter[name]
            line = name.ljust(width) + "".join(f"  {counts[c]:>{len(c)}}" for c in columns)
            failed = counts["failed"] > 0
            terminalreporter.write_line(line, red=failed, green=not failed)
            for reason, n in sorted(self.declared[name].items()):
                terminalreporter.write_line(f"{'':{width}}  {reason} ({n} tests)")


def _skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    return reason.removeprefix("Skipped: ")
