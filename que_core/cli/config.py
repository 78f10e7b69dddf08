"""``que config``: the effective settings and where each came from."""

from __future__ import annotations

from typing import Any

import click

from que_core import settings_file
from que_core.cli.group import SHORT_EPILOG, main
from que_core.cli.output import echo_json, table
from que_core.cli.settings import Settings, connection_options, json_option, worker_options
from que_core.dsn import mask_password


@main.command(epilog=SHORT_EPILOG, short_help="The effective settings and where each came from.")
@connection_options
@worker_options
@click.option("--module", "modules", multiple=True,
              help="A job module to import (repeatable) [$QUE_MODULES; [tool.que] modules].")
@json_option
def config(as_json: bool, **opts: Any) -> None:
    """Print the effective settings and where each came from: flag, env,
    pyproject (the [tool.que] table of the pyproject.toml in this directory or
    above) or default. Passwords are masked. Takes every setting's flag, to
    show what a command given the same flags would use."""
    from que_core import embedded

    cfg = Settings(opts)
    pyproject = settings_file.find_pyproject()
    out: dict[str, dict[str, Any]] = {}
    for name, v in cfg.values.items():
        value = v.value
        if name == "embedded_dir" and not value:
            value = str(embedded.default_data_dir())
        if name == "dsn" and isinstance(value, str):
            value = mask_password(value)
        out[name] = {"value": value, "source": v.source}
    if as_json:
        echo_json({"settings": out, "pyproject": str(pyproject) if pyproject else None})
        return
    rows = []
    for name, item in out.items():
        value = item["value"]
        if isinstance(value, list):
            value = ",".join(value)
        rows.append([name, "-" if value is None else value, item["source"]])
    click.echo(table(["SETTING", "VALUE", "SOURCE"], rows, set()))
    click.echo(f"pyproject.toml: {pyproject or 'none found'}")

