"""que web over HTTP (Starlette's TestClient) against a real PostgreSQL:
every page and action, authentication, CSRF, read-only mode, escaping."""

from __future__ import annotations

import base64
import html
import re
import threading
import warnings
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

pytest.importorskip("starlette")
pytest.importorskip("jinja2")

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # Starlette 1.x: httpx in TestClient is deprecated
    from starlette.testclient import TestClient

from conformance.fixtures import wait_until
from que_core import Job, plugins
from que_core.connection import Connection
from que_core.web import create_app
from tests.helpers import migrated_dsn

LOCAL = ("127.0.0.1", 50000)
HOSTILE_ARGS = '["<script>alert(1)</script>", {"x": "</pre><img src=x onerror=alert(2)>"}]'
HOSTILE_ERROR = "<script>alert(3)</script> boom"
HOSTILE_BACKTRACE = "<b>line 1</b>\n<iframe src=javascript:alert(4)>"


web_dsn = migrated_dsn("web_dsn", scope="module")


@pytest.fixture
def db(web_dsn: str) -> Iterator[Connection]:
    conn = plugins.get_adapter("psycopg").connect(web_dsn)
    for table in ("que_jobs", "que_core_throughput", "que_core_paused_queues",
                  "que_core_cancels"):
        conn.execute(f"DELETE FROM {table}")
    yield conn
    conn.close()


def client(dsn: str, host: tuple[str, int] = LOCAL, **options: Any) -> TestClient:
    return TestClient(create_app(dsn, adapter="psycopg", **options), client=host)


def insert(db: Connection, queue: str = "default", job_class: str = "Job", args: str = "[]",
           run_at: str = "now()", errors: int = 0, message: str | None = None,
           backtrace: str | None = None, expired: bool = False, finished: bool = False,
           data: str = "{}", kwargs: str = "{}") -> int:
    ((job_id,),) = db.execute(
        "INSERT INTO que_jobs (queue, job_class, args, kwargs, data, run_at, error_count, "
        "  last_error_message, last_error_backtrace, expired_at, finished_at, "
        "  job_schema_version) "
        f"VALUES (%s, %s, %s::jsonb, %s::jsonb, %s::jsonb, {run_at}, %s, %s, %s, "
        "  CASE WHEN %s THEN now() END, CASE WHEN %s THEN now() END, 2) RETURNING id",
        (queue, job_class, args, kwargs, data, errors, message, backtrace, expired, finished),
    )
    return int(job_id)


def token(c: TestClient, path: str = "/jobs") -> str:
    page = c.get(path)
    assert page.status_code == 200
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found, "no CSRF token in the page"
    return found.group(1)


def state(db: Connection, job_id: int) -> tuple[Any, ...]:
    ((row),) = db.execute(
        "SELECT run_at <= now(), expired_at IS NOT NULL, error_count FROM que_jobs WHERE id = %s",
        (job_id,),
    )
    return tuple(row)


def other_session(dsn: str) -> Connection:
    return plugins.get_adapter("psycopg").connect(dsn)


# -- pages ------------------------------------------------------------------------------


def counts_row(html: str, queue: str) -> list[str]:
    row = re.search(rf'<tr data-queue="{queue}">(.*?)</tr>', html, re.S)
    assert row, f"no row for queue {queue}"
    return [re.sub(r"<[^>]+>", "", cell).strip()
            for cell in re.findall(r"<td[^>]*>(.*?)</td>", row.group(1), re.S)]


def test_overview_counts_each_state_per_queue(db: Connection, web_dsn: str) -> None:
    for _ in range(3):
        insert(db, run_at="now() - interval '2 minutes'")
    insert(db, run_at="now() + interval '1 hour'")
    insert(db, errors=1, message="x")
    insert(db, errors=2, message="x", run_at="now() + interval '1 hour'")
    insert(db, expired=True, errors=5)
    insert(db, expired=True, data='{"cancelled": {"at": "2026-01-01T00:00:00Z", "reason": null}}')
    insert(db, finished=True)
    held = insert(db)
    insert(db, queue="mail")
    holder = other_session(web_dsn)
    try:
        holder.execute("SELECT pg_advisory_lock(%s)", (held,))
        with client(web_dsn) as c:
            page = c.get("/")
            assert page.status_code == 200
            # queue, waiting, scheduled, running, retrying, expired, cancelled, oldest,
            # paused
            cells = counts_row(page.text, "default")
            assert cells[:7] == ["default", "3", "1", "1", "2", "1", "1"]
            assert cells[7].endswith("min") or cells[7].endswith(" s"), cells
            assert cells[8] == "Pause…"  # not paused
            assert counts_row(page.text, "mail")[:7] == ["mail", "1", "0", "0", "0", "0", "0"]
            live = c.get("/live/overview")
            assert live.status_code == 200 and "<html" not in live.text
            assert counts_row(live.text, "default")[:7] == cells[:7]
    finally:
        holder.close()


def test_overview_caps_counts_and_says_at_least(db: Connection, web_dsn: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from que_core import admin

    monkeypatch.setattr(admin, "OVERVIEW_CAP", 5)
    db.execute("INSERT INTO que_jobs (queue, job_class, job_schema_version) "
               "SELECT 'bulk', 'Job', 2 FROM generate_series(1, 12)")
    # Cancelled jobs are counted in the same capped walk as the expired ones.
    db.execute("INSERT INTO que_jobs (queue, job_class, job_schema_version, expired_at, data) "
               "SELECT 'gone', 'Job', 2, now(), '{\"cancelled\": {\"at\": \"x\"}}' "
               "FROM generate_series(1, 12)")
    counts = admin.queue_overview(db, cap=5)
    assert [(r.queue, r.ready, r.cancelled, r.capped) for r in counts] == [
        ("bulk", 6, 0, ["ready"]), ("gone", 0, 6, ["expired", "cancelled"])]
    with client(web_dsn) as c:
        page = c.get("/").text
        assert counts_row(page, "bulk")[1] == "≥ 6"
        assert counts_row(page, "gone")[6] == "≥ 6"


def test_chart_shows_what_workers_ran(db: Connection, web_dsn: str,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from que_core import Worker, throughput

    monkeypatch.setattr(throughput, "FLUSH_SECONDS", 0.1)

    class WebChartJob(Job):
        def run(self) -> None:
            pass

    class WebChartFailingJob(Job):
        retry_interval = 3600

        def run(self) -> None:
            raise ValueError("no")

    class WebChartAsyncJob(Job):
        async def run(self) -> None:
            pass

    for _ in range(5):
        WebChartJob.enqueue(conn=db)
    for _ in range(2):  # run on the worker's event loop, tallied as well
        WebChartAsyncJob.enqueue(conn=db)
    WebChartFailingJob.enqueue(conn=db, run_at=datetime.now(timezone.utc) - timedelta(seconds=30))
    worker = Worker(web_dsn, adapter="psycopg", queues=["default"], poll_interval=0.2)
    worker.start()
    try:
        wait_until(lambda: db.execute("SELECT coalesce(sum(done), 0), coalesce(sum(failed), 0) "
                                    "FROM que_core_throughput")[0] == (7, 1))
    finally:
        worker.stop(timeout=10)
    # The failing job was due 30 s before it ran: that is its latency.
    ((most,),) = db.execute("SELECT max(latency_max) FROM que_core_throughput")
    assert 29 < most < 60
    with client(web_dsn) as c:
        page = c.get("/")
    assert "done 7" in page.text and "failed 1" in page.text
    assert re.search(r'<rect class="done"', page.text) and re.search(r'<rect class="failed"',
                                                                      page.text)


def test_job_list_filters_and_keyset_pages(db: Connection, web_dsn: str) -> None:
    ids = [insert(db, job_class="Mailer" if i % 2 else "Report", args=f"[{i}]")
           for i in range(120)]
    tagged = insert(db, queue="mail", data='{"tags": ["vip"]}')
    failing = insert(db, queue="mail", errors=1, message="SMTP said: Relay Denied")
    with client(web_dsn) as c:
        first = c.get("/jobs")
        shown = [int(i) for i in re.findall(r'class="job-link" href="/jobs/(\d+)"', first.text)]
        assert shown == [failing, tagged, *sorted(ids, reverse=True)[:48]]
        older = re.search(r'id="older" href="([^"]+)"', first.text)
        assert older
        second = c.get(older.group(1).replace("&amp;", "&"))
        shown2 = [int(i) for i in re.findall(r'class="job-link" href="/jobs/(\d+)"', second.text)]
        assert shown2 == sorted(ids, reverse=True)[48:98]
        third = c.get(re.search(r'id="older" href="([^"]+)"', second.text).group(1))
        shown3 = [int(i) for i in re.findall(r'class="job-link" href="/jobs/(\d+)"', third.text)]
        assert shown3 == sorted(ids, reverse=True)[98:]
        assert 'id="older"' not in third.text

        def listed(query: str) -> set[int]:
            page = c.get("/jobs?" + query)
            assert page.status_code == 200, page.text
            return {int(i) for i in re.findall(r'class="job-link" href="/jobs/(\d+)"',
                                                page.text)}

        assert listed("queue=mail") == {tagged, failing}
        assert listed("tag=vip") == {tagged}
        assert listed("error=relay+denied") == {failing}
        assert listed("state=errored") == {failing}
        mailers = sorted((i for n, i in enumerate(ids) if n % 2), reverse=True)
        assert listed("class=Mailer&queue=default") == set(mailers[:50])
        bad = c.get("/jobs?state=sleeping")
        assert bad.status_code == 400 and "unknown job state &#39;sleeping&#39;" in bad.text
        assert c.get("/jobs?below=soon").status_code == 400


def test_job_page_shows_every_part(db: Connection, web_dsn: str) -> None:
    job_id = insert(db, args='[1, "two"]', kwargs='{"user": 7}', errors=2,
                    message="ValueError: nope", backtrace="file a.py, line 3",
                    data='{"tags": ["t1"], "django_task": {"return_value": {"ok": 42}}}')
    with client(web_dsn) as c:
        page = c.get(f"/jobs/{job_id}")
        assert page.status_code == 200
        text = html.unescape(page.text)
        for part in ('"two"', '"user": 7', "ValueError: nope", "file a.py, line 3", "t1",
                     '"ok": 42', 'id="error-count">2<'):
            assert part in text, part
        missing = c.get("/jobs/999999999")
        assert missing.status_code == 404 and "no job with id 999999999" in missing.text


def test_running_and_workers_pages_name_the_worker(db: Connection, web_dsn: str) -> None:
    import os
    import socket

    from que_core import Worker

    started, release = threading.Event(), threading.Event()

    class WebBlockingJob(Job):
        def run(self) -> None:
            started.set()
            release.wait(20)

    job_id = WebBlockingJob.enqueue(conn=db).id
    worker = Worker(web_dsn, adapter="psycopg", queues=["default"], worker_count=2,
                    poll_interval=0.2)
    worker.start()
    try:
        assert started.wait(20)
        with client(web_dsn) as c:
            for path in ("/running", "/live/running"):
                page = c.get(path)
                assert page.status_code == 200
                row = re.search(rf'<tr>\s*<td class="n"><a href="/jobs/{job_id}">.*?</tr>',
                                page.text, re.S)
                assert row, page.text
                assert socket.gethostname() in row.group(0)
                assert f">{os.getpid()}<" in row.group(0)
            workers = c.get("/workers")
            assert socket.gethostname() in workers.text and f">{os.getpid()}<" in workers.text
            assert "default" in workers.text and ">2<" in workers.text
            # Running jobs are left alone, as `que jobs retry` leaves them.
            done = c.post(f"/jobs/{job_id}/delete", data={"csrf_token": token(c)})
            assert "deleted 0 jobs (1 skipped: running now)" in done.text
    finally:
        release.set()
        worker.stop(timeout=10)


# -- actions ------------------------------------------------------------------------------


def test_retry_expire_delete_one_job(db: Connection, web_dsn: str) -> None:
    errored = insert(db, errors=1, message="x", run_at="now() + interval '1 hour'")
    expired = insert(db, errors=3, expired=True)
    victim = insert(db)
    with client(web_dsn) as c:
        csrf = token(c)
        done = c.post(f"/jobs/{errored}/retry", data={"csrf_token": csrf})
        assert done.status_code == 200 and "retried 1 job" in done.text
        assert str(done.url).endswith(f"/jobs/{errored}?done=retry&changed=1&skipped=0&other=0")
        assert state(db, errored) == (True, False, 1)
        assert "retried 1 job" in c.post(f"/jobs/{expired}/retry", data={"csrf_token": csrf}).text
        assert state(db, expired) == (True, False, 3)
        assert "expired 1 job" in c.post(f"/jobs/{errored}/expire", data={"csrf_token": csrf}).text
        assert state(db, errored)[1] is True
        again = c.post(f"/jobs/{errored}/expire", data={"csrf_token": csrf})
        assert "expired 0 jobs (1 unchanged: already finished or expired)" in again.text
        gone = c.post(f"/jobs/{victim}/delete", data={"csrf_token": csrf})
        assert "deleted 1 job" in gone.text and str(gone.url).split("?")[0].endswith("/jobs")
        assert db.execute("SELECT count(*) FROM que_jobs WHERE id = %s", (victim,)) == [(0,)]
        assert c.post(f"/jobs/{victim}/retry", data={"csrf_token": csrf}).status_code == 404
        assert c.post(f"/jobs/{expired}/explode", data={"csrf_token": csrf}).status_code == 404


def test_bulk_actions_confirm_then_apply_to_the_filter_only(db: Connection,
                                                            web_dsn: str) -> None:
    mine = [insert(db, queue="mail", errors=1, message="x") for _ in range(3)]
    held = insert(db, queue="mail", errors=1, message="x")
    other = insert(db, queue="default", errors=1, message="x")
    holder = other_session(web_dsn)
    try:
        holder.execute("SELECT pg_advisory_lock(%s)", (held,))
        with client(web_dsn) as c:
            csrf = token(c, "/jobs?queue=mail")
            form = {"csrf_token": csrf, "action": "delete", "queue": "mail"}
            ask = c.post("/jobs/bulk", data=form)
            assert ask.status_code == 200
            assert "Delete 4 jobs (1 running now: those are skipped)?" in ask.text
            assert db.execute("SELECT count(*) FROM que_jobs") == [(5,)]  # nothing yet
            done = c.post("/jobs/bulk", data={**form, "confirm": "yes"})
            assert "deleted 3 jobs (1 skipped: running now)" in done.text
            left = {i for (i,) in db.execute("SELECT id FROM que_jobs")}
            assert left == {held, other} and not set(mine) & left
            nothing = c.post("/jobs/bulk", data={**form, "queue": "nowhere"})
            assert "Delete no jobs?" in nothing.text and 'id="confirm"' not in nothing.text
            every = c.post("/jobs/bulk", data={"csrf_token": csrf, "action": "retry"})
            assert "(every job: there is no filter)" in every.text
            assert c.post("/jobs/bulk", data={"csrf_token": csrf, "action": "nuke"}
                          ).status_code == 400
    finally:
        holder.close()


def paused(db: Connection, queue: str) -> tuple[Any, ...] | None:
    from que_core import control

    return control.paused_since(queue, conn=db)


def test_pause_and_resume_a_queue_from_the_overview(db: Connection, web_dsn: str) -> None:
    insert(db, queue="mail")
    hostile = "<script>alert(6)</script> deploy"
    with client(web_dsn) as c:
        csrf = token(c, "/")
        ask = c.post("/queues/pause", data={"csrf_token": csrf, "queue": "mail"})
        assert ask.status_code == 200
        assert "Pause queue mail: que-core workers start none of its jobs" in ask.text
        assert 'name="reason"' in ask.text and 'name="queue" value="mail"' in ask.text
        assert paused(db, "mail") is None  # nothing yet
        done = c.post("/queues/pause", data={"csrf_token": csrf, "queue": "mail",
                                             "reason": hostile, "confirm": "yes"})
        assert done.status_code == 200
        assert str(done.url).endswith("/?done=pause&queue=mail&changed=1")
        assert 'id="notice">paused queue mail: que-core workers' in done.text
        since = paused(db, "mail")
        assert since is not None and since[1] == hostile
        cells = counts_row(done.text, "mail")
        shown = rf"paused\s+Resume…\s+since {since[0]}: {re.escape(html.escape(hostile))}"
        assert re.fullmatch(shown, cells[8]), cells
        assert "<script>alert(6)" not in done.text
        live = c.get("/live/overview").text
        assert 'class="badge paused"' in counts_row_html(live, "mail")
        again = c.post("/queues/pause", data={"csrf_token": csrf, "queue": "mail",
                                              "confirm": "yes"})
        assert f"queue mail is paused already (since {since[0]})" in again.text
        # A paused queue with no jobs is listed, to be resumed.
        c.post("/queues/pause", data={"csrf_token": csrf, "queue": "idle", "confirm": "yes"})
        assert 'class="badge paused"' in counts_row_html(c.get("/").text, "idle")
        ask = c.post("/queues/resume", data={"csrf_token": csrf, "queue": "mail"})
        assert "Resume queue mail: workers take its jobs again?" in ask.text
        assert 'name="reason"' not in ask.text and paused(db, "mail") is not None
        done = c.post("/queues/resume", data={"csrf_token": csrf, "queue": "mail",
                                              "confirm": "yes"})
        assert 'id="notice">resumed queue mail<' in done.text and paused(db, "mail") is None
        cells = counts_row(done.text, "mail")
        assert cells[8] == "Pause…" and "badge paused" not in counts_row_html(done.text, "mail")
        assert "queue mail is not paused" in c.post(
            "/queues/resume", data={"csrf_token": csrf, "queue": "mail", "confirm": "yes"}).text
        # A link cannot make the overview claim a pause that did not happen.
        assert 'id="notice"' not in c.get("/?done=pause&queue=mail&changed=1").text
        assert 'id="notice"' not in c.get("/?done=pause&queue=nowhere&changed=1").text
        assert c.post("/queues/pause", data={"csrf_token": csrf}).status_code == 400
        bad = c.post("/queues/pause", data={"csrf_token": csrf, "queue": "x" * 600,
                                            "confirm": "yes"})
        assert bad.status_code == 400 and "queue" in bad.text
        assert c.post("/queues/explode", data={"csrf_token": csrf,
                                               "queue": "mail"}).status_code == 404


def counts_row_html(text: str, queue: str) -> str:
    row = re.search(rf'<tr data-queue="{queue}">(.*?)</tr>', text, re.S)
    assert row, f"no row for queue {queue}"
    return row.group(1)


def test_cancel_one_job_waiting_or_running(db: Connection, web_dsn: str) -> None:
    waiting = insert(db, job_class="Mailer")
    held = insert(db)
    ended = insert(db, finished=True)
    hostile = "<script>alert(7)</script> wrong customer"
    holder = other_session(web_dsn)
    try:
        holder.execute("SELECT pg_advisory_lock(%s)", (held,))
        with client(web_dsn) as c:
            csrf = token(c)
            page = c.get(f"/jobs/{waiting}")
            assert f'action="/jobs/{waiting}/cancel"' in page.text
            assert f'action="/jobs/{ended}/cancel"' not in c.get(f"/jobs/{ended}").text
            ask = c.post(f"/jobs/{waiting}/cancel", data={"csrf_token": csrf})
            assert ask.status_code == 200
            assert f"Cancel job {waiting} (Mailer, ready)?" in ask.text
            assert 'name="reason"' in ask.text
            assert state(db, waiting) == (True, False, 0)  # nothing yet
            done = c.post(f"/jobs/{waiting}/cancel", data={"csrf_token": csrf,
                                                           "reason": hostile, "confirm": "yes"})
            assert done.status_code == 200
            assert str(done.url).endswith(f"/jobs/{waiting}?done=cancel&cancelled=1")
            assert f"cancelled job {waiting}: it was waiting and will never run" in done.text
            assert 'id="job-state">cancelled<' in done.text
            assert f'id="cancel-reason">{html.escape(hostile)}<' in done.text
            assert "<script>alert(7)" not in done.text
            assert f'action="/jobs/{waiting}/cancel"' not in done.text  # nothing to cancel now
            ((marker,),) = db.execute("SELECT data -> 'cancelled' ->> 'reason' FROM que_jobs "
                                      "WHERE id = %s", (waiting,))
            assert marker == hostile and state(db, waiting)[1] is True
            again = c.post(f"/jobs/{waiting}/cancel", data={"csrf_token": csrf,
                                                            "confirm": "yes"})
            assert f"job {waiting} was cancelled already: nothing to do" in again.text
            # A running job: its worker is told to stop it, as `que jobs cancel` does.
            ask = c.post(f"/jobs/{held}/cancel", data={"csrf_token": csrf})
            assert "(1 running now: its worker is told to stop it)?" in ask.text
            done = c.post(f"/jobs/{held}/cancel", data={"csrf_token": csrf, "reason": "stop",
                                                        "confirm": "yes"})
            assert (f"cancelled job {held}: it is running, and its worker was told to stop it"
                    in done.text)
            assert db.execute("SELECT reason FROM que_core_cancels WHERE job_id = %s",
                              (held,)) == [("stop",)]
            assert 'id="cancel-requested">Cancel requested at ' in done.text
            assert f"job {ended} has finished: nothing to cancel" in c.post(
                f"/jobs/{ended}/cancel", data={"csrf_token": csrf, "confirm": "yes"}).text
            assert c.post("/jobs/999999999/cancel", data={"csrf_token": csrf}
                          ).status_code == 404
            assert c.post("/jobs/999999999/cancel", data={"csrf_token": csrf, "confirm": "yes"}
                          ).status_code == 404
            too_long = c.post(f"/jobs/{held}/cancel", data={"csrf_token": csrf,
                                                            "reason": "r" * 501,
                                                            "confirm": "yes"})
            assert too_long.status_code == 400 and "cancel reason" in too_long.text
    finally:
        holder.close()


def test_bulk_cancel_over_the_filter_and_the_cancelled_state(db: Connection,
                                                              web_dsn: str) -> None:
    mine = [insert(db, queue="mail") for _ in range(3)]
    held = insert(db, queue="mail")
    ended = insert(db, queue="mail", finished=True)
    other = insert(db, queue="default")
    holder = other_session(web_dsn)
    try:
        holder.execute("SELECT pg_advisory_lock(%s)", (held,))
        with client(web_dsn) as c:
            csrf = token(c, "/jobs?queue=mail")
            assert 'button name="action" value="cancel"' in c.get("/jobs?queue=mail").text
            form = {"csrf_token": csrf, "action": "cancel", "queue": "mail"}
            ask = c.post("/jobs/bulk", data=form)
            assert ask.status_code == 200
            assert ("Cancel 5 jobs (1 running now: their workers are told to stop them)?"
                    in ask.text)
            assert 'name="reason"' in ask.text and 'name="queue" value="mail"' in ask.text
            assert db.execute("SELECT count(*) FROM que_jobs WHERE expired_at IS NOT NULL"
                              ) == [(0,)]  # nothing yet
            done = c.post("/jobs/bulk", data={**form, "reason": "<b>spam</b>", "confirm": "yes"})
            assert done.status_code == 200
            assert ("cancelled 4 jobs (1 running: its worker was told to stop it; "
                    "1 unchanged: already ended or cancelled)") in done.text
            cancelled = {i for (i,) in db.execute(
                "SELECT id FROM que_jobs WHERE data -> 'cancelled' ->> 'reason' = '<b>spam</b>'")}
            assert cancelled == set(mine)
            assert db.execute("SELECT job_id FROM que_core_cancels") == [(held,)]
            assert state(db, other) == (True, False, 0)
            listed = c.get("/jobs?state=cancelled")
            shown = {int(i) for i in re.findall(r'class="job-link" href="/jobs/(\d+)"',
                                                listed.text)}
            assert shown == set(mine) and "<b>spam" not in listed.text
            assert '<option value="cancelled" selected>' in listed.text
            assert counts_row(c.get("/").text, "mail")[5:7] == ["0", "3"]
            assert ended not in shown
            nothing = c.post("/jobs/bulk", data={**form, "queue": "nowhere"})
            assert "Cancel no jobs?" in nothing.text and 'id="confirm"' not in nothing.text
    finally:
        holder.close()


# -- security ---------------------------------------------------------------------------


def basic(password: str, user: str = "admin") -> dict[str, str]:
    return {"authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_password_is_asked_for(db: Connection, web_dsn: str) -> None:
    with client(web_dsn, password="open sesame") as c:
        for path in ("/", "/jobs", "/running", "/workers", "/live/overview", "/static/que.js"):
            refused = c.get(path)
            assert refused.status_code == 401, path
            assert refused.headers["www-authenticate"].startswith("Basic ")
        assert c.get("/", headers=basic("open sesam")).status_code == 401
        assert c.get("/", headers={"authorization": "Basic !!!"}).status_code == 401
        assert c.get("/", headers=basic("open sesame")).status_code == 200
        assert c.get("/", headers=basic("open sesame", user="")).status_code == 200
        assert c.post("/jobs/bulk", data={"action": "delete"}).status_code == 401
    with pytest.raises(ValueError, match="empty password"):
        create_app(web_dsn, adapter="psycopg", password="")


def test_without_auth_only_this_machine_is_answered(db: Connection, web_dsn: str) -> None:
    with client(web_dsn, host=("203.0.113.9", 4000)) as c:
        refused = c.get("/")
        assert refused.status_code == 403 and "only this machine" in refused.text
    with client(web_dsn, host=("::1", 4000)) as c:
        assert c.get("/").status_code == 200
    with client(web_dsn, host=("203.0.113.9", 4000),
                authorize=lambda request: request.headers.get("x-staff") == "yes") as c:
        assert c.get("/").status_code == 403
        assert c.get("/", headers={"x-staff": "yes"}).status_code == 200


def test_posts_need_the_csrf_token(db: Connection, web_dsn: str) -> None:
    job_id = insert(db, errors=1, message="x", run_at="now() + interval '1 hour'")
    with client(web_dsn) as c:
        csrf = token(c)
        for data in ({}, {"csrf_token": "forged" * 8}):
            refused = c.post(f"/jobs/{job_id}/retry", data=data)
            assert refused.status_code == 403 and "CSRF token" in refused.text
            refused = c.post("/jobs/bulk", data={**data, "action": "delete", "confirm": "yes"})
            assert refused.status_code == 403
        for data in ({}, {"csrf_token": "forged" * 8}):
            for path, form in ((f"/jobs/{job_id}/cancel", {"confirm": "yes"}),
                               ("/queues/pause", {"queue": "default", "confirm": "yes"}),
                               ("/queues/resume", {"queue": "default", "confirm": "yes"}),
                               ("/jobs/bulk", {"action": "cancel", "confirm": "yes"})):
                refused = c.post(path, data={**data, **form})
                assert refused.status_code == 403 and "CSRF token" in refused.text, path
        assert paused(db, "default") is None
        foreign = c.post(f"/jobs/{job_id}/retry", data={"csrf_token": csrf},
                         headers={"origin": "https://evil.example"})
        assert foreign.status_code == 403 and "another site" in foreign.text
        assert c.get(f"/jobs/{job_id}/retry").status_code == 405  # never by GET
        assert state(db, job_id) == (False, False, 1)
        cookie = c.get("/jobs").headers.get("set-cookie")
        assert cookie is None  # the browser keeps its token
    with client(web_dsn) as fresh:
        cookie = fresh.get("/jobs").headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")


def test_read_only_hides_and_refuses_every_action(db: Connection, web_dsn: str) -> None:
    from que_core import control

    job_id = insert(db, errors=1, message="x", run_at="now() + interval '1 hour'")
    control.pause("held", conn=db, reason="incident")
    with client(web_dsn, read_only=True) as c:
        overview = c.get("/").text
        assert "Pause…" not in overview and "Resume…" not in overview
        assert 'class="badge paused"' in counts_row_html(overview, "held")  # still shown
        for path in ("/", "/jobs", f"/jobs/{job_id}", "/running", "/workers"):
            page = c.get(path)
            assert page.status_code == 200 and 'method="post"' not in page.text, path
            assert "read-only" in page.text
        csrf = c.cookies.get("que_web_csrf")
        assert csrf
        for action in ("retry", "expire", "delete"):
            refused = c.post(f"/jobs/{job_id}/{action}", data={"csrf_token": csrf})
            assert refused.status_code == 403 and "read-only" in refused.text
        refused = c.post("/jobs/bulk", data={"csrf_token": csrf, "action": "delete",
                                             "confirm": "yes"})
        assert refused.status_code == 403
        for path, form in ((f"/jobs/{job_id}/cancel", {}),
                           (f"/jobs/{job_id}/cancel", {"confirm": "yes"}),
                           ("/queues/pause", {"queue": "default", "confirm": "yes"}),
                           ("/queues/resume", {"queue": "held", "confirm": "yes"}),
                           ("/jobs/bulk", {"action": "cancel", "confirm": "yes"})):
            refused = c.post(path, data={"csrf_token": csrf, **form})
            assert refused.status_code == 403 and "read-only" in refused.text, path
    assert state(db, job_id) == (False, False, 1)
    assert paused(db, "default") is None and paused(db, "held") is not None


def test_job_data_is_escaped_everywhere(db: Connection, web_dsn: str) -> None:
    job_id = insert(db, queue="<i>q</i>", job_class="<script>alert(5)</script>",
                    args=HOSTILE_ARGS, errors=1, message=HOSTILE_ERROR,
                    backtrace=HOSTILE_BACKTRACE, data='{"tags": ["<b>t</b>"]}')
    with client(web_dsn) as c:
        pages = [c.get(p).text for p in ("/", "/live/overview", "/jobs", f"/jobs/{job_id}",
                                         "/jobs?queue=%3Ci%3Eq%3C%2Fi%3E", "/jobs?error=%3Cscript")]
        csrf = token(c)
        pages.append(c.post("/jobs/bulk", data={"csrf_token": csrf, "action": "retry",
                                                "queue": "<i>q</i>"}).text)
    for text in pages:
        for raw in ("<script>alert", "<img src=x", "<iframe", "<b>line", "<i>q</i>", "<b>t</b>"):
            assert raw not in text
    job_page = pages[3]
    assert "&lt;script&gt;alert(3)&lt;/script&gt; boom" in job_page
    assert "&lt;iframe src=javascript:alert(4)&gt;" in job_page
    assert "&lt;/pre&gt;&lt;img src=x onerror=alert(2)&gt;" in job_page
    assert "&lt;script&gt;alert(5)&lt;/script&gt;" in pages[2]


def test_security_headers(db: Connection, web_dsn: str) -> None:
    with client(web_dsn) as c:
        page = c.get("/")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert page.headers["x-content-type-options"] == "nosniff"


def test_no_dsn_or_password_in_any_page(db: Connection, web_dsn: str) -> None:
    db_password, web_password = "dsn-secret-4711", "web-secret-0815"
    dsn = web_dsn.replace("postgres@", f"postgres:{db_password}@")
    job_id = insert(db, errors=1, message="x")
    seen = []
    with client(dsn, password=web_password) as c:
        auth = basic(web_password)
        for path in ("/", "/live/overview", "/jobs", f"/jobs/{job_id}", "/running",
                     "/live/running", "/workers", "/jobs/0", "/jobs?state=x"):
            seen.append(c.get(path, headers=auth).text)
    down = "postgresql://postgres:dsn-secret-4711@127.0.0.1:9/nowhere?connect_timeout=2"
    with client(down, password=web_password) as c:
        page = c.get("/", headers=basic(web_password))
        assert page.status_code == 503 and "cannot connect" in page.text
        seen.append(page.text)
    for text in seen:
        assert db_password not in text and web_password not in text
        assert "127.0.0.1:9" not in text and web_dsn.split("/")[-1] not in text


def test_wsgi_app_for_flask_and_other_wsgi_hosts(db: Connection, web_dsn: str) -> None:
    pytest.importorskip("a2wsgi")
    werkzeug_test = pytest.importorskip("werkzeug.test")
    from que_core.web import wsgi_app

    insert(db, queue="wsgi-queue")
    app = wsgi_app(web_dsn, adapter="psycopg", password="pw")
    browser = werkzeug_test.Client(app)
    assert browser.get("/").status_code == 401
    page = browser.get("/", headers=basic("pw"))
    assert page.status_code == 200 and "wsgi-queue" in page.get_data(as_text=True)


def test_mounted_in_a_starlette_app_under_a_prefix(db: Connection, web_dsn: str) -> None:
    from starlette.applications import Starlette
    from starlette.routing import Mount

    job_id = insert(db, errors=1, message="x", run_at="now() + interval '1 hour'")
    host = Starlette(routes=[Mount("/admin/que", app=create_app(web_dsn, adapter="psycopg"))])
    with TestClient(host, client=LOCAL) as c:
        page = c.get("/admin/que/jobs")
        assert page.status_code == 200
        assert f'href="/admin/que/jobs/{job_id}"' in page.text
        assert 'href="/admin/que/static/que.css"' in page.text
        assert c.get("/admin/que/static/que.css").status_code == 200
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        done = c.post(f"/admin/que/jobs/{job_id}/retry", data={"csrf_token": csrf.group(1)})
        assert done.status_code == 200 and "retried 1 job" in done.text
        assert str(done.url).startswith("http://testserver/admin/que/jobs/")


def test_schedules_page_shows_last_and_next_ticks(db: Connection, web_dsn: str) -> None:
    from que_core.schedules import Schedule

    job_id = insert(db, job_class="Nightly")
    db.execute("INSERT INTO que_core_ticks (schedule, tick, job_id) "
               "VALUES ('nightly', '2026-01-01 03:00:00+00', %s)", (job_id,))
    plan = [Schedule("nightly", "0 3 * * *", "Nightly", ("<b>x</b>",)),
            Schedule("hourly", "0 * * * *", "Hourly")]
    with client(web_dsn, schedules=plan) as c:
        page = c.get("/schedules")
    assert page.status_code == 200
    row = re.search(r'<tr data-schedule="nightly">(.*?)</tr>', page.text, re.S)
    assert row and "0 3 * * *" in row.group(1) and f'href="/jobs/{job_id}"' in row.group(1)
    assert "2026-01-01" in row.group(1) and "ready" in row.group(1)
    assert re.search(r"T03:00:00", row.group(1).split("</td>")[-2])  # the next tick
    hourly = re.search(r'<tr data-schedule="hourly">(.*?)</tr>', page.text, re.S)
    assert hourly and "-" in hourly.group(1)


def test_job_page_shows_a_kept_result(db: Connection, web_dsn: str) -> None:
    job_id = insert(db, finished=True)
    db.execute("UPDATE que_jobs SET que_core_result = '{\"sum\": 3, \"html\": \"<i>\"}' "
               "WHERE id = %s", (job_id,))
    with client(web_dsn) as c:
        page = c.get(f"/jobs/{job_id}")
    assert '"sum": 3' in html.unescape(page.text) and "<i>" not in page.text


def test_ages_on_the_dashboard_and_in_the_cli_table() -> None:
    from que_core.cli.output import age
    from que_core.web.app import _age

    assert [_age(s) for s in (None, 0.25, 1, 119.9, 120, 7199, 7200, 172799, 172800)] == [
        "-", "250 ms", "1.0 s", "119.9 s", "2 min", "120 min", "2.0 h", "48.0 h", "2 d"]
    assert [age(s) for s in (None, 0.25, 59.9, 60, 3599, 3600, 86399, 86400)] == [
        "-", "0.2s", "59.9s", "1.0m", "60.0m", "1.0h", "24.0h", "1.0d"]
