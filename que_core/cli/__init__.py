"""The ``que`` command: work jobs, migrate, inspect and manage queues.

One module a role: :mod:`~que_core.cli.group` (the group, exit codes, errors),
:mod:`~que_core.cli.settings` (settings, flags, the connection),
:mod:`~que_core.cli.output` (tables, JSON), and the commands by what they act
on: :mod:`~que_core.cli.work`, :mod:`~que_core.cli.schema` (migrate, drop),
:mod:`~que_core.cli.queues` (stats, clear), :mod:`~que_core.cli.jobs`,
:mod:`~que_core.cli.config` and :mod:`~que_core.cli.demo`. A new command is a
function decorated with ``@main.command()`` in the module of what it acts on
(or a new module, imported below); a new worker option goes in
:data:`que_core.options.WORKER_SPECS`.
"""

from __future__ import annotations

from que_core.cli import config, demo, jobs, queues, schema, work  # noqa: F401 (registers)
from que_core.cli.group import (
    EXIT_CANNOT_CONNECT,
    EXIT_ERROR,
    EXIT_OK,
    EXIT_SCHEMA,
    EXIT_SECOND_SIGNAL,
    EXIT_UNFINISHED,
    EXIT_USAGE,
    main,
)

__all__ = [
    "EXIT_CANNOT_CONNECT", "EXIT_ERROR", "EXIT_OK", "EXIT_SCHEMA", "EXIT_SECOND_SIGNAL",
    "EXIT_UNFINISHED", "EXIT_USAGE", "main",
]
