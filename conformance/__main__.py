"""``python -m conformance --adapter NAME --dsn DSN [-- PYTEST-ARGS...]``

Runs the conformance suite with pytest against installed adapters (found
through the ``que.adapters`` entry point group, so an adapter from outside
this repository works too) and prints a summary per adapter. The exit status
is pytest's: 0 when every test passed or was skipped.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from que_core import plugins


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m conformance",
        description="Run the que-core adapter conformance suite.",
        epilog="Arguments after -- go to pytest, e.g. -- -x -k notification",
    )
    parser.add_argument(
        "--adapter",
        action="append",
        default=[],
        metavar="NAME",
        help="adapter to test; repeat or separate by commas (default: every installed one)",
    )
    parser.add_argument(
        "--dsn",
        default="",
        help="PostgreSQL server to create test databases on "
        "(default: $QUE_TEST_DSN, $DATABASE_URL, else the embedded server)",
    )
    parser.add_argument("pytest_args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    installed = sorted(plugins.installed_adapters())
    names = [n.strip() for opt in args.adapter for n in opt.split(",") if n.strip()]
    unknown = [n for n in names if n not in installed]
    if unknown or not (names or installed):
        print(
            f"python -m conformance: adapter not installed: {', '.join(unknown) or '(any)'} "
            f"(installed: {', '.join(installed) or 'none'})",
            file=sys.stderr,
        )
        return 2

    extra = args.pytest_args[1:] if args.pytest_args[:1] == ["--"] else args.pytest_args
    pytest_args = [str(Path(__file__).resolve().parent), "-p", "conformance.plugin"]
    # pytest-asyncio (the async tests') warns unless told; not every checkout has our ini.
    pytest_args += ["-o", "asyncio_default_fixture_loop_scope=function"]
    for name in names:
        pytest_args += ["--adapter", name]
    if args.dsn:
        pytest_args += ["--dsn", args.dsn]
    # In a process of its own: this one has imported que_core and conformance
    # already, which pytest could no longer rewrite for its assertion messages
    # (it would say so, with a PytestAssertRewriteWarning each).
    try:
        return subprocess.call([sys.executable, "-m", "pytest", *pytest_args, *extra])
    except KeyboardInterrupt:  # pytest, which got it too, has reported
        return 2


if __name__ == "__main__":
    sys.exit(main())
