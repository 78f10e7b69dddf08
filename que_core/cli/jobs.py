"""``que jobs``: list, show, retry, expire and delete jobs, by id or filter."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import click

from que_core.cli.group import CONTEXT, EXIT_USAGE, SHORT_EPILOG, QueCliError, main
from que_core.cli.output import VERBS, bulk_report, echo_json, short, table
from que_core.cli.settings import Settings, connection_options, json_option


class JsonParam(click.ParamType):  # type: ignore[type-arg, unused-ignore]
    name = "JSON"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str):
            return value
        from que_core.validation import MAX_DEPTH, depth

        try:
            parsed = json.loads(value)
        except ValueError as exc:
            self.fail(f"{value[:100]!r} is not JSON: {exc}", param, ctx)
        except RecursionError:
            parsed = None
        else:
            # No job's args nest deeper (the args array adds one level).
            if depth(parsed) <= MAX_DEPTH + 1:
                return parsed
        self.fail(f"{value[:40]!r}... is nested too deeply (at most {MAX_DEPTH + 1} levels)",
                  param, ctx)


def filter_options(f: Callable[..., Any]) -> Callable[..., Any]:
    from que_core.admin import STATES

    decorators = [
        click.option("-q", "--queue", "queues", multiple=True, help="Only jobs of this queue "
                "(repeatable)."),
        click.option("-c", "--class", "classes", multiple=True, metavar="CLASS",
                help="Only jobs of this job class (repeatable)."),
        click.option("-s", "--state", "states", multiple=True, type=click.Choice(STATES),
                help="Only jobs in this state (repeatable)."),
        click.option("-t", "--tag", default=None, help="Only jobs with this tag."),
        click.option("--args", "args_json", type=JsonParam(), default=None,
                help='Only jobs whose args contain this JSON, e.g. \'[42]\' or \'[{"a": 1}]\'.'),
        click.option("--kwargs", "kwargs_json", type=JsonParam(), default=None,
                help='Only jobs whose kwargs contain this JSON object, e.g. \'{"user": 7}\'.'),
    ]
    for decorator in reversed(decorators):
        f = decorator(f)
    return f


def _filter(ids: Sequence[int], opts: dict[str, Any]) -> Any:
    from que_core.admin import JobFilter

    return JobFilter(
        ids=list(ids),
        queues=list(opts.pop("queues", ()) or ()),
        classes=list(opts.pop("classes", ()) or ()),
        states=list(opts.pop("states", ()) or ()),
        tag=opts.pop("tag", None),
        args=opts.pop("args_json", None),
        kwargs=opts.pop("kwargs_json", None),
    )


@main.group(context_settings=CONTEXT, epilog=SHORT_EPILOG,
            short_help="List, show, retry, expire, delete, cancel and prune jobs.")
def jobs() -> None:
    """List, show, retry, expire, delete, cancel and prune jobs.

    States: ready, scheduled (run_at in the future), running (a worker holds
    it now), errored (failed, waiting for its retry), expired (out of
    retries), cancelled, finished. Retry, expire and delete leave running
    jobs alone; cancel stops them.
    """


@jobs.command("list", epilog=SHORT_EPILOG, short_help="List jobs, with filters.")
@connection_options
@filter_options
@click.option("-n", "--limit", type=click.IntRange(min=1), default=50, show_default=True,
              help="At most this many jobs (by id).")
@json_option
def jobs_list(limit: int, as_json: bool, **opts: Any) -> None:
    """List jobs, filtered by queue, class, state, tag and args containment."""
    from que_core import admin

    where = _filter((), opts)
    cfg = Settings(opts)
    with cfg.session() as conn:
        found = admin.list_jobs(conn, where, limit)
    if as_json:
        echo_json(found)
        return
    if not found:
        click.echo("no jobs")
        return
    rows = [
        [j["id"], j["queue"], j["job_class"], j["state"], j["priority"], j["run_at"],
         j["error_count"], short(j["last_error_message"], 60)]
        for j in found
    ]
    click.echo(table(["ID", "QUEUE", "CLASS", "STATE", "PRIORITY", "RUN AT", "ERRORS",
                       "LAST ERROR"], rows, {0, 4, 6}))
    if len(found) == limit:
        click.echo(f"(first {limit}; use --limit for more)", err=True)


@jobs.command("show", epilog=SHORT_EPILOG, short_help="Show one job, its backtrace included.")
@connection_options
@click.argument("job_id", type=int)
@json_option
def jobs_show(job_id: int, as_json: bool, **opts: Any) -> None:
    """Show every field of job JOB_ID, its last error's backtrace included."""
    from que_core import admin

    cfg = Settings(opts)
    with cfg.session() as conn:
        job = admin.get_job(conn, job_id)
    if job is None:
        raise QueCliError(f"no job with id {job_id}")
    if as_json:
        echo_json(job)
        return
    from que_core.printable import escape

    for key, value in job.items():
        if key == "last_error_backtrace":
            continue
        if isinstance(value, (dict, list)):
            value = json.dumps(value, ensure_ascii=False)
        click.echo(f"{key + ':':<21} {'-' if value is None else escape(str(value))}")
    if job["last_error_backtrace"]:
        click.echo("last_error_backtrace:")
        for line in str(job["last_error_backtrace"]).rstrip().split("\n"):
            click.echo(f"  {escape(line)}")




def _bulk_command(action: str, ids: Sequence[int], all_jobs: bool, yes: bool, as_json: bool,
                  opts: dict[str, Any]) -> None:
    from que_core import admin

    where = _filter(ids, opts)
    if not ids and where.empty and not all_jobs:
        raise QueCliError(
            f"say which jobs to {action}: job ids, filters (--queue, --class, --state, "
            "--tag, --args, --kwargs) or --all",
            EXIT_USAGE,
        )
    cfg = Settings(opts)
    missing: list[int] = []
    with cfg.session() as conn:
        if ids:
            present = {j["id"] for j in admin.list_jobs(conn, admin.JobFilter(ids=ids),
                                                          len(ids))}
            missing = sorted(set(ids) - present)
        else:
            matched, running = admin.count_jobs(conn, where)
            if matched == 0:
                bulk_report(action, admin.BulkResult(action, 0, 0, 0), [], as_json)
                return
            if not yes:
                what = f"{matched} job{'s' if matched != 1 else ''}"
                note = f" ({running} running now: those are skipped)" if running else ""
                click.confirm(VERBS[action].question.format(what=what) + note + "?",
                              abort=True, err=True)
        result = getattr(admin, f"{action}_jobs")(conn, where)
    bulk_report(action, result, missing, as_json)
    if missing:
        raise QueCliError(f"no job with id {', '.join(map(str, missing))}")




def _bulk_options(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.argument("ids", nargs=-1, type=int)(f)
    f = connection_options(f)
    f = filter_options(f)
    f = click.option("--all", "all_jobs", is_flag=True, help="Every job (no filter).")(f)
    f = click.option("-y", "--yes", is_flag=True,
                     help="Do not ask for confirmation (filter forms ask).")(f)
    return json_option(f)


@jobs.command("retry", epilog=SHORT_EPILOG, short_help="Run jobs now, by id or filter.")
@_bulk_options
def jobs_retry(ids: tuple[int, ...], all_jobs: bool, yes: bool, as_json: bool,
               **opts: Any) -> None:
    """Run jobs now: the given IDS, or every job matching the filters (asks
    first unless --yes). Expired jobs get one more attempt; finished and
    running jobs are left alone."""
    _bulk_command("retry", ids, all_jobs, yes, as_json, opts)


@jobs.command("expire", epilog=SHORT_EPILOG, short_help="Expire jobs, by id or filter.")
@_bulk_options
def jobs_expire(ids: tuple[int, ...], all_jobs: bool, yes: bool, as_json: bool,
                **opts: Any) -> None:
    """Expire jobs so they never run again: the given IDS, or every job
    matching the filters (asks first unless --yes). Running jobs are left alone."""
    _bulk_command("expire", ids, all_jobs, yes, as_json, opts)


@jobs.command("delete", epilog=SHORT_EPILOG, short_help="Delete jobs, by id or filter.")
@_bulk_options
def jobs_delete(ids: tuple[int, ...], all_jobs: bool, yes: bool, as_json: bool,
                **opts: Any) -> None:
    """Delete jobs: the given IDS, or every job matching the filters (asks
    first unless --yes). Running jobs are left alone."""
    _bulk_command("delete", ids, all_jobs, yes, as_json, opts)



@jobs.command("cancel", epilog=SHORT_EPILOG, short_help="Cancel jobs: never run, or stopped.")
@connection_options
@click.argument("ids", nargs=-1, type=int, required=True)
@click.option("--reason", default=None, help="Why (kept on the job, at most 500 characters).")
@click.option("--wait", "wait", type=click.FloatRange(min=0), default=5.0, show_default=True,
              help="Seconds to wait for running jobs to be stopped (0: do not wait).")
@json_option
def jobs_cancel(ids: tuple[int, ...], reason: str | None, wait: float, as_json: bool,
                **opts: Any) -> None:
    """Cancel the jobs IDS. A waiting job never runs. A running one is
    stopped by its worker, wherever it runs (told by NOTIFY, and polling
    each second), unless it ends first; a job can see self.cancelled and
    return. A cancelled job is expired, with {"cancelled": {"at", "reason"}}
    in its data (Ruby Que reads it as expired). Cancelling a job that has
    ended, or twice, says so and changes nothing (exit status 0)."""
    from que_core import control

    cfg = Settings(opts)
    with cfg.session() as conn:
        results = control.cancel_jobs(list(ids), conn=conn, reason=reason, wait=wait)
    if as_json:
        echo_json([r.to_dict() for r in results])
        return
    for r in results:
        click.echo(r.message)


@jobs.command("prune", epilog=SHORT_EPILOG,
              short_help="Delete finished, expired and cancelled jobs older than an age.")
@connection_options
@click.option("--older-than", "older_than", required=True, metavar="AGE",
              help="Delete the jobs that ended longer ago than this: 30m, 12h, 7d, 2w.")
@click.option("--finished/--no-finished", default=True, show_default=True,
              help="Finished jobs (kept with keep_finished), by finished_at.")
@click.option("--expired/--no-expired", default=True, show_default=True,
              help="Expired and cancelled jobs, by expired_at.")
@json_option
def jobs_prune(older_than: str, finished: bool, expired: bool, as_json: bool,
               **opts: Any) -> None:
    """Delete the kept jobs (finished, expired, cancelled) that ended more than
    --older-than ago, as a worker's retention does (--retain-finished,
    --retain-expired), in batches of 1000 rows, one transaction each."""
    from que_core import control, retention

    try:
        age = retention.parse_age(older_than)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="'--older-than'") from None
    if age is None:
        raise click.BadParameter("give an age such as 7d, not never",
                                 param_hint="'--older-than'")
    cfg = Settings(opts)
    with cfg.session() as conn:
        pruned = control.prune(conn=conn, older_than=age, finished=finished, expired=expired)
    if as_json:
        echo_json({"finished": pruned.finished, "expired": pruned.expired,
                   "batches": pruned.batches, "seconds": round(pruned.seconds, 3)})
        return
    click.echo(f"deleted {pruned.finished} finished and {pruned.expired} expired or cancelled "
               f"job(s) older than {retention.format_age(age)} in {pruned.seconds:.2f} s")
