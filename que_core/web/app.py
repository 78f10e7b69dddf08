"""The dashboard's pages and actions (a Starlette app; see :func:`create_app`).

Everything it reads or changes goes through :mod:`que_core.admin`, the code
behind ``que stats`` and ``que jobs``: a retry, expiry or deletion here means
what it means there (running jobs are left alone and counted as skipped).
Cancelling, pausing and resuming go through :mod:`que_core.control`, as
``que jobs cancel`` and ``que queues pause/resume`` do (a running job gets a
cancel request: its worker stops it).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlencode

import jinja2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from que_core import admin, control
from que_core.connection import Adapter, Connection
from que_core.dsn import check_dsn, mask_password
from que_core.errors import (
    CannotConnect,
    ConfigurationError,
    DatabaseError,
    InvalidJob,
    SchemaError,
)
from que_core.plugins import get_adapter
from que_core.printable import rough_age
from que_core.web import chart
from que_core.web.pool import Pool
from que_core.web.security import (
    CSRF_FIELD,
    Authorize,
    Guard,
    csrf_refusal,
    csrf_token,
    set_csrf_cookie,
)

if TYPE_CHECKING:
    from que_core.schedules import Schedule

log = logging.getLogger("que_core.web")

HERE = Path(__file__).parent
PAGE_SIZE = 50
ACTIONS = ("retry", "expire", "delete")
#: The actions over the job list's filter: those and cancel (que_core.control).
BULK_ACTIONS = (*ACTIONS, "cancel")
QUEUE_ACTIONS = ("pause", "resume")
#: Filter fields of the job list, as query parameters and bulk form fields.
FILTER_FIELDS = ("queue", "class", "state", "tag", "error")

T = TypeVar("T")


#: The dashboard's ages: ``250 ms``, ``42.0 s``, ``90 min``, ``30.0 h``, ``3 d``.
_AGE_STEPS = ((1, 0.001, "{:.0f} ms"), (120, 1, "{:.1f} s"), (7200, 60, "{:.0f} min"),
              (172800, 3600, "{:.1f} h"))


def _age(seconds: float | None) -> str:
    return rough_age(seconds, _AGE_STEPS, (86400, "{:.0f} d"))


def _pretty(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)


def _templates() -> Jinja2Templates:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,  # every value: job data is whatever someone enqueued
        undefined=jinja2.StrictUndefined,
    )
    env.filters["age"] = _age
    env.filters["pretty"] = _pretty
    return Jinja2Templates(env=env)


class Dashboard:
    """The state behind one dashboard app: settings and database sessions."""

    def __init__(self, pool: Pool, read_only: bool, refresh: float,
                 schedules: Sequence[Schedule] | None = None) -> None:
        self.pool = pool
        #: None: the schedules of the job classes registered when a page asks.
        self.schedules = None if schedules is None else list(schedules)
        self.read_only = read_only
        self.refresh = refresh
        self.templates = _templates()
        self._schema_checked = False

    # -- database --------------------------------------------------------------------

    def _call(self, fn: Callable[..., T], *args: Any) -> T:
        with self.pool.connection() as conn:
            if not self._schema_checked:
                admin.check_schema(conn)
                self._schema_checked = True
            return fn(conn, *args)

    async def db(self, fn: Callable[..., T], *args: Any) -> T:
        """*fn(connection, *args)* on a pooled session, in a worker thread."""
        try:
            return await run_in_threadpool(self._call, fn, *args)
        except CannotConnect as exc:
            log.error("que web: cannot connect to the database: %s", mask_password(str(exc)))
            raise HTTPException(503, "cannot connect to the database (the reason is in "
                                     "the dashboard's log)") from None
        except SchemaError as exc:
            raise HTTPException(503, str(exc)) from None
        except (InvalidJob, ConfigurationError) as exc:  # a bad queue name or reason
            raise HTTPException(400, str(exc)) from None
        except DatabaseError as exc:
            log.error("que web: database error: %s", mask_password(str(exc)))
            raise HTTPException(500, "database error (the details are in the dashboard's "
                                     "log)") from None

    # -- rendering -------------------------------------------------------------------------

    def render(self, request: Request, name: str, status: int = 200,
               **context: Any) -> Response:
        def url(route: str, **params: Any) -> str:
            query = {k: v for k, v in params.pop("_query", {}).items() if v not in (None, "")}
            path = request.url_for(route, **params).path
            return path + ("?" + urlencode(query) if query else "")

        response = self.templates.TemplateResponse(request, name, {
            "url": url,
            "read_only": self.read_only,
            "refresh": self.refresh,
            "csrf_field": CSRF_FIELD,
            "csrf_token": csrf_token(request),
            "states": admin.STATES,
            "now": time.time(),
            **context,
        }, status_code=status)
        set_csrf_cookie(request, response)
        return response

    async def form(self, request: Request) -> FormData:
        """The posted form, once this POST may change anything."""
        if self.read_only:
            raise HTTPException(403, "this dashboard is read-only (que web --read-only): "
                                     "it changes nothing")
        form = await request.form()
        why = csrf_refusal(request, form)
        if why is not None:
            raise HTTPException(403, why)
        return form


def _dashboard(request: Request) -> Dashboard:
    board: Dashboard = request.app.state.que_dashboard
    return board


def _filter(values: Mapping[str, Any]) -> tuple[admin.JobFilter, dict[str, str]]:
    """The job filter of a query string or form, and its fields as given."""
    given = {k: str(values.get(k) or "").strip() for k in FILTER_FIELDS}
    state = given["state"]
    if state and state not in admin.STATES:
        raise HTTPException(400, f"unknown job state {state!r} (one of "
                                 f"{', '.join(admin.STATES)})")
    where = admin.JobFilter(
        queues=[given["queue"]] if given["queue"] else [],
        classes=[given["class"]] if given["class"] else [],
        states=[state] if state else [],
        tag=given["tag"] or None,
        error=given["error"] or None,
    )
    return where, {k: v for k, v in given.items() if v}


def _int(value: Any, name: str) -> int | None:
    if value in (None, ""):
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise HTTPException(400, f"{name} {value!r} is not a whole number") from None
    if not -(2**63) <= number < 2**63:
        raise HTTPException(400, f"{name} {value!r} is out of range")
    return number


def _notice(params: Mapping[str, Any], job_id: int | None = None) -> str | None:
    """What the last action did, from the numbers in its redirect (never text
    from the URL: a link cannot make the page say anything else)."""
    action = params.get("done")
    if action == "cancel":
        try:
            counts = {r: int(params[r]) for r in control.RESULTS if r in params}
        except ValueError:
            return None
        if job_id is not None and list(counts.values()) == [1]:
            return control.RESULTS[next(iter(counts))].format(id=job_id)
        return control.BulkCancel(counts).summary()
    if action not in ACTIONS:
        return None
    try:
        changed, skipped, other = (int(params.get(k, 0)) for k in ("changed", "skipped", "other"))
    except ValueError:
        return None
    return admin.BulkResult(action, changed + skipped + other, changed, skipped).summary()


def _done_query(result: admin.BulkResult | control.BulkCancel) -> dict[str, Any]:
    if isinstance(result, control.BulkCancel):
        return {"done": "cancel", **result.counts}
    return {"done": result.action, "changed": result.changed,
            "skipped": result.skipped_running,
            "other": result.matched - result.changed - result.skipped_running}


def _queue_notice(params: Mapping[str, Any], queues: Sequence[admin.QueueCounts]) -> str | None:
    """What a pause or resume did: said only of a queue shown, in the state
    it was put in (a link cannot make the page claim anything else)."""
    action, name, changed = params.get("done"), params.get("queue"), params.get("changed")
    row = next((r for r in queues if r.queue == name), None)
    if action not in QUEUE_ACTIONS or row is None or changed not in ("0", "1"):
        return None
    if (row.paused_at is not None) != (action == "pause"):
        return None
    if action == "pause":
        return (f"paused queue {name}: que-core workers start none of its jobs until it is "
                "resumed (running ones go on)" if changed == "1"
                else f"queue {name} is paused already (since {row.paused_at})")
    return f"resumed queue {name}" if changed == "1" else f"queue {name} is not paused"


# -- pages ---------------------------------------------------------------------------


def _overview_data(conn: Connection) -> dict[str, Any]:
    queues = admin.queue_overview(conn)
    totals = admin.QueueCounts("all queues")
    for row in queues:
        for name in ("ready", "scheduled", "running", "errored", "expired", "cancelled"):
            mine, theirs = getattr(totals, name), getattr(row, name)
            setattr(totals, name, None if mine is None or theirs is None else mine + theirs)
            if name in row.capped and name not in totals.capped:
                totals.capped.append(name)
        if row.oldest_due_age is not None and (totals.oldest_due_age is None
                                               or row.oldest_due_age > totals.oldest_due_age):
            totals.oldest_due_age = row.oldest_due_age
    return {"queues": queues, "totals": totals, "cap": admin.OVERVIEW_CAP,
            "workers": admin.lockers(conn),
            "chart": chart.build(admin.throughput(conn), time.time())}


async def overview(request: Request) -> Response:
    board = _dashboard(request)
    data = await board.db(_overview_data)
    return board.render(request, "overview.html", page="overview",
                        notice=_queue_notice(request.query_params, data["queues"]), **data)


async def overview_live(request: Request) -> Response:
    board = _dashboard(request)
    data = await board.db(_overview_data)
    return board.render(request, "_overview_live.html", **data)


async def jobs(request: Request) -> Response:
    board = _dashboard(request)
    where, given = _filter(request.query_params)
    below = _int(request.query_params.get("below"), "below")
    found = await board.db(admin.page_jobs, where, PAGE_SIZE, below)
    return board.render(
        request, "jobs.html", page="jobs", jobs=found.jobs, given=given, below=below,
        next_below=found.next_below, short=len(found.jobs) < PAGE_SIZE,
        window=admin.PAGE_WINDOW, notice=_notice(request.query_params),
    )


async def job(request: Request) -> Response:
    board = _dashboard(request)
    job_id = _int(request.path_params["job_id"], "job id")
    assert job_id is not None
    found = await board.db(admin.get_job, job_id)
    if found is None:
        raise HTTPException(404, f"no job with id {job_id}")
    cancelled = found["data"].get("cancelled") if isinstance(found["data"], dict) else None
    requested = None
    if found["state"] == "running":
        requested = await board.db(lambda conn: control.cancel_requested(job_id, conn=conn))
    # A keep_result class's result (que_core.results), else a Django task's.
    django_task = found["data"].get("django_task") if isinstance(found["data"], dict) else None
    has_result = found["result"] is not None
    result = found["result"]
    if not has_result and isinstance(django_task, dict) and "return_value" in django_task:
        has_result, result = True, django_task["return_value"]
    return board.render(request, "job.html", page="jobs", job=found, result=result,
                        has_result=has_result, notice=_notice(request.query_params, job_id),
                        cancelled=cancelled if isinstance(cancelled, dict) else None,
                        cancel_requested=requested)


async def _listing(request: Request, template: str, name: str,
                   fetch: Callable[[Connection], Any], **context: Any) -> Response:
    """*template* with what *fetch* reads as *name*."""
    board = _dashboard(request)
    found = await board.db(fetch)
    return board.render(request, template, **{name: found}, **context)


async def running(request: Request) -> Response:
    return await _listing(request, "running.html", "running", admin.running_jobs,
                          page="running")


async def running_live(request: Request) -> Response:
    return await _listing(request, "_running_live.html", "running", admin.running_jobs)


async def schedules_page(request: Request) -> Response:
    """The periodic jobs (issue 14's que_core.schedules): last and next ticks."""
    from que_core.schedules import declared, status

    board = _dashboard(request)
    plan = board.schedules if board.schedules is not None else declared()
    rows = await board.db(status, plan)
    return board.render(request, "schedules.html", page="schedules", schedules=rows)


async def workers(request: Request) -> Response:
    return await _listing(request, "workers.html", "workers", admin.lockers, page="workers")


# -- actions --------------------------------------------------------------------------


async def job_action(request: Request) -> Response:
    """Retry, expire or delete one job: `que jobs <action> ID`."""
    board = _dashboard(request)
    await board.form(request)
    action = request.path_params["action"]
    if action not in ACTIONS:
        raise HTTPException(404, f"no action {action!r} (one of {', '.join(ACTIONS)})")
    job_id = _int(request.path_params["job_id"], "job id")
    assert job_id is not None
    result = await board.db(getattr(admin, f"{action}_jobs"), admin.JobFilter(ids=[job_id]))
    if result.matched == 0:
        raise HTTPException(404, f"no job with id {job_id}")
    if action == "delete" and result.changed:
        target = request.url_for("jobs").path
    else:
        target = request.url_for("job", job_id=job_id).path
    return RedirectResponse(f"{target}?{urlencode(_done_query(result))}", 303)


def _reason(form: FormData) -> str | None:
    reason = str(form.get("reason") or "").strip()
    return reason or None


def _confirm(board: Dashboard, request: Request, question: str, button: str, target: str,
             back: str, *, page: str, hidden: Mapping[str, str] | None = None,
             given: Mapping[str, str] | None = None, matched: int = 1, running_now: int = 0,
             running_note: str = "", ask_reason: str = "", danger: bool = False) -> Response:
    """The confirmation page: *question* (a question mark follows) and a form
    that posts *hidden* and *given* (the list's filter) back to *target* with
    confirm=yes; nothing to confirm when *matched* is 0."""
    return board.render(request, "confirm.html", page=page, question=question, button=button,
                        target=target, back=back, hidden=dict(hidden or {}),
                        given=dict(given or {}), matched=matched, running_now=running_now,
                        running_note=running_note, ask_reason=ask_reason, danger=danger)


async def job_cancel(request: Request) -> Response:
    """Cancel one job, once confirmed: `que jobs cancel ID --reason ...`
    (without --wait: a running job's worker is told to stop it)."""
    board = _dashboard(request)
    form = await board.form(request)
    job_id = _int(request.path_params["job_id"], "job id")
    assert job_id is not None
    page = request.url_for("job", job_id=job_id).path
    if form.get("confirm") != "yes":
        found = await board.db(admin.get_job, job_id)
        if found is None:
            raise HTTPException(404, f"no job with id {job_id}")
        return _confirm(board, request, f"Cancel job {job_id} ({found['job_class']}, "
                        f"{found['state']})", f"Yes, cancel job {job_id}",
                        request.url_for("job_cancel", job_id=job_id).path, page, page="jobs",
                        running_now=int(found["state"] == "running"),
                        running_note="its worker is told to stop it",
                        ask_reason="kept on the job", danger=True)
    reason = _reason(form)
    done = await board.db(lambda conn: control.cancel(job_id, conn=conn, reason=reason))
    if done.result == "missing":
        raise HTTPException(404, f"no job with id {job_id}")
    return RedirectResponse(f"{page}?{urlencode({'done': 'cancel', done.result: 1})}", 303)


async def queue_action(request: Request) -> Response:
    """Pause or resume a queue, once confirmed: `que queues pause NAME
    --reason ...`, `que queues resume NAME`."""
    board = _dashboard(request)
    form = await board.form(request)
    action = request.path_params["action"]
    if action not in QUEUE_ACTIONS:
        raise HTTPException(404, f"no action {action!r} (one of {', '.join(QUEUE_ACTIONS)})")
    name = str(form.get("queue") or "")
    if not name:
        raise HTTPException(400, "name the queue to pause or resume (form field queue)")
    overview_page = request.url_for("overview").path
    if form.get("confirm") != "yes":
        if action == "pause":
            question = (f"Pause queue {name}: que-core workers start none of its jobs until "
                        "it is resumed (running ones go on)")
        else:
            question = f"Resume queue {name}: workers take its jobs again"
        return _confirm(board, request, question, f"Yes, {action} queue {name}",
                        request.url_for("queue_action", action=action).path, overview_page,
                        page="overview", hidden={"queue": name},
                        ask_reason="shown on the overview" if action == "pause" else "")
    if action == "pause":
        reason = _reason(form)
        changed = await board.db(lambda conn: control.pause(name, conn=conn, reason=reason))
    else:
        changed = await board.db(lambda conn: control.resume(name, conn=conn))
    query = urlencode({"done": action, "queue": name, "changed": int(changed)})
    return RedirectResponse(f"{overview_page}?{query}", 303)


async def bulk_action(request: Request) -> Response:
    """An action over every job the list's filter matches: first a page that
    says how many (and how many run now, which are skipped) and asks; then,
    confirmed, `que jobs <action> --queue ... --yes`."""
    board = _dashboard(request)
    form = await board.form(request)
    action = form.get("action")
    if action not in BULK_ACTIONS:
        raise HTTPException(400, f"unknown action {action!r} (one of {', '.join(BULK_ACTIONS)})")
    assert isinstance(action, str)
    where, given = _filter(form)
    if form.get("confirm") != "yes":
        matched, running_now = await board.db(admin.count_jobs, where)
        what = f"{matched} job{'s' if matched != 1 else ''}" if matched else "no jobs"
        if where.empty and matched:
            what += " (every job: there is no filter)"
        plural = "" if matched == 1 else "s"
        back = request.url_for("jobs").path + ("?" + urlencode(given) if given else "")
        if action == "cancel":
            return _confirm(board, request, f"Cancel {what}", f"Yes, cancel {matched} job{plural}",
                            request.url_for("bulk").path, back, page="jobs",
                            hidden={"action": action}, given=given, matched=matched,
                            running_now=running_now,
                            running_note="their workers are told to stop them",
                            ask_reason="kept on each job", danger=True)
        return _confirm(board, request, admin.ACTION_WORDS[action].question.format(what=what),
                        f"Yes, {action} {matched} job{plural}", request.url_for("bulk").path,
                        back, page="jobs", hidden={"action": action}, given=given,
                        matched=matched, running_now=running_now,
                        running_note="those are skipped", danger=action == "delete")
    result: admin.BulkResult | control.BulkCancel
    if action == "cancel":
        reason = _reason(form)
        result = await board.db(lambda conn: control.cancel_matching(where, conn=conn,
                                                                     reason=reason))
    else:
        result = await board.db(getattr(admin, f"{action}_jobs"), where)
    query = {**given, **_done_query(result)}
    return RedirectResponse(f"{request.url_for('jobs').path}?{urlencode(query)}", 303)


async def _error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    board = _dashboard(request)
    return board.render(request, "error.html", status=exc.status_code, page="",
                        status_code=exc.status_code, message=exc.detail)


# -- the app --------------------------------------------------------------------------


def create_app(
    dsn: str,
    *,
    adapter: str | Adapter | None = None,
    password: str | None = None,
    authorize: Authorize | None = None,
    read_only: bool = False,
    refresh: float = 3.0,
    schedules: Sequence[Schedule] | None = None,
) -> Starlette:
    """The dashboard as an ASGI app, to serve (``que web``) or mount::

        app.mount("/que", create_app(dsn, authorize=is_staff))

    :param password: ask for it by HTTP basic auth (any user name).
    :param authorize: the host application's check of a request (its login):
        a callable taking the Starlette request, returning (or awaiting) a bool.
    With neither, the app answers only clients on this machine.
    :param read_only: hide every action and refuse every POST.
    :param refresh: seconds between the live parts' refreshes.
    :param schedules: the periodic jobs to show (``que_core.schedules``);
        default: those of the job classes registered in this process.
    """
    checked = check_dsn(dsn, "")
    found = get_adapter(adapter) if adapter is None or isinstance(adapter, str) else adapter
    if password is not None and not password:
        raise ValueError("an empty password would let anyone in: give one, or none")
    board = Dashboard(Pool(found, checked), read_only, refresh, schedules)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        board.pool.close()

    routes = [
        Route("/", overview, name="overview"),
        Route("/live/overview", overview_live, name="overview_live"),
        Route("/jobs", jobs, name="jobs"),
        Route("/jobs/bulk", bulk_action, methods=["POST"], name="bulk"),
        Route("/jobs/{job_id}", job, name="job"),
        Route("/jobs/{job_id}/cancel", job_cancel, methods=["POST"], name="job_cancel"),
        Route("/jobs/{job_id}/{action}", job_action, methods=["POST"], name="job_action"),
        Route("/running", running, name="running"),
        Route("/live/running", running_live, name="running_live"),
        Route("/workers", workers, name="workers"),
        Route("/schedules", schedules_page, name="schedules"),
        Route("/queues/{action}", queue_action, methods=["POST"], name="queue_action"),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(Guard, password=password, authorize=authorize)],
        exception_handlers={HTTPException: _error},
        lifespan=lifespan,
    )
    app.state.que_dashboard = board
    return app
