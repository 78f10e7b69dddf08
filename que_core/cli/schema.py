"""``que migrate`` and ``que drop``: the que schema, up, down and away."""

from __future__ import annotations

from typing import Any

import click

from que_core.cli.group import SHORT_EPILOG, main
from que_core.cli.output import echo_json
from que_core.cli.settings import Settings, connection_options, json_option
from que_core.dsn import mask_password
from que_core.errors import SchemaError


@main.command(epilog=SHORT_EPILOG,
              short_help="Migrate the schema up or down; --status shows its version.")
@connection_options
@click.option("--to", "target", type=click.IntRange(min=0), default=None,
              help="Migrate up or down to this version (default: the latest).")
@click.option("--status", is_flag=True, help="Print the schema version and exit.")
@click.option("-y", "--yes", is_flag=True, help="Migrate down without asking.")
@json_option
def migrate(target: int | None, status: bool, yes: bool, as_json: bool, **opts: Any) -> None:
    """Bring the database to the latest que schema, or up or down --to a
    version; --status prints the version. Migrating down removes tables and
    columns (down to 0: everything), so it asks first."""
    from que_core.migrations import (
        LATEST_REVISION,
        LATEST_VERSION,
        current_revision,
        current_version,
    )
    from que_core.migrations import migrate as do_migrate

    if target is not None and target > LATEST_VERSION:
        raise click.BadParameter(
            f"{target}: versions go from 0 (no que schema) to {LATEST_VERSION}",
            param_hint="'--to'",
        )
    cfg = Settings(opts)
    with cfg.session(check_schema=False) as conn:
        before = current_version(conn)
        rev_before = current_revision(conn)
        if status:
            state = (
                "missing" if before == 0
                else "newer" if (before, rev_before) > (LATEST_VERSION, LATEST_REVISION)
                else "current" if (before, rev_before) == (LATEST_VERSION, LATEST_REVISION)
                else "older"
            )
            if as_json:
                echo_json({"version": before, "latest": LATEST_VERSION,
                            "revision": rev_before, "latest_revision": LATEST_REVISION,
                            "state": state})
            else:
                notes = {
                    "missing": "no que schema: run `que migrate`",
                    "current": "up to date",
                    "older": "run `que migrate` to upgrade",
                    "newer": "newer than this que-core knows: upgrade que-core",
                }
                click.echo(
                    f"schema version {before}{_revision(before, rev_before)} (latest: "
                    f"{LATEST_VERSION}{_revision(LATEST_VERSION, LATEST_REVISION)}): "
                    f"{notes[state]}"
                )
            return
        goal = LATEST_VERSION if target is None else target
        if before > LATEST_VERSION:
            raise SchemaError(
                f"the que schema is at version {before}, newer than this que-core knows "
                f"({LATEST_VERSION}): upgrade que-core"
            )
        if goal < before and not yes:
            click.confirm(
                f"Migrate {mask_password(cfg.dsn())} DOWN from version {before} to {goal}? "
                "This drops tables or columns and their data",
                abort=True, err=True,
            )
        after = do_migrate(conn, goal)
        rev_after = current_revision(conn)
    if as_json:
        echo_json({"from": before, "to": after, "latest": LATEST_VERSION,
                    "revision_from": rev_before, "revision_to": rev_after})
    elif (before, rev_before) == (after, rev_after):
        click.echo(f"schema already at version {after}{_revision(after, rev_after)}")
    elif before == after:
        click.echo(f"migrated que-core's revision of schema version {after} from "
                   f"{rev_before} to {rev_after}")
    else:
        click.echo(f"migrated schema from version {before} to {after}"
                   f"{_revision(after, rev_after)}")


def _revision(version: int, revision: int) -> str:
    from que_core.migrations import LATEST_VERSION

    return f", que-core revision {revision}" if version == LATEST_VERSION else ""



@main.command(epilog=SHORT_EPILOG, short_help="Drop the que schema and every job.")
@connection_options
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@json_option
def drop(yes: bool, as_json: bool, **opts: Any) -> None:
    """Drop the que schema: the que_jobs, que_lockers and que_values tables,
    every job in them, and que's functions and triggers (asks first unless
    --yes). `que migrate` creates it again."""
    from que_core import admin
    from que_core.migrations import LATEST_VERSION, current_version

    cfg = Settings(opts)
    with cfg.session(check_schema=False) as conn:
        version = current_version(conn)
        if version == 0:
            if as_json:
                echo_json({"dropped": False, "from": 0})
            else:
                click.echo("there is no que schema to drop")
            return
        if version > LATEST_VERSION:
            raise SchemaError(
                f"the que schema is at version {version}, newer than this que-core knows "
                f"({LATEST_VERSION}): drop it with the tool that created it"
            )
        if not yes:
            ((count,),) = conn.execute("SELECT count(*) FROM que_jobs")
            workers = len(admin.stats(conn).lockers) if version == LATEST_VERSION else 0
            note = f"; {workers} worker process(es) are connected to it" if workers else ""
            click.confirm(
                f"Drop the que schema (version {version}) and its {count} job(s) from "
                f"{mask_password(cfg.dsn())}{note}?", abort=True, err=True,
            )
        before = admin.drop_schema(conn)
    if as_json:
        echo_json({"dropped": True, "from": before})
    else:
        click.echo(f"dropped the que schema (was version {before})")

