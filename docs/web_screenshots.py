"""Redo docs/img/web-*.png: the dashboard over a demo database, in headless Chromium.

    python docs/web_screenshots.py                 # 10 minutes of demo traffic first
    python docs/web_screenshots.py --minutes 2

Makes a throwaway database on $QUE_TEST_DSN / $DATABASE_URL, runs a worker in
this process on four queues while a feeder enqueues demo jobs in bursts (quick
mails and image resizes, slow reports, webhooks of which some fail and are
retried or expire), so that the chart shows what the worker's tallies
recorded; then serves `que web` (uvicorn) and takes the screenshots with
Debian's chromium and chromedriver (Selenium). Needs the web extra and
selenium. Nothing in the pictures is drawn by hand.
"""

from __future__ import annotations

import argparse
import random
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from conformance.fixtures import free_port  # noqa: E402
from que_core import Job, Worker, migrate, plugins  # noqa: E402
from que_core.job import bulk_enqueue  # noqa: E402
from que_core.testing import databases  # noqa: E402

OUT = ROOT / "docs" / "img"
release = threading.Event()


class SendWelcomeEmail(Job):
    job_name = "SendWelcomeEmail"
    queue = "mail"

    def run(self, user_id: int, template: str = "welcome") -> None:
        time.sleep(random.uniform(0.005, 0.03))


class ResizeImage(Job):
    job_name = "ResizeImage"
    def run(self, image_id: int, sizes: list[int]) -> None:
        time.sleep(random.uniform(0.005, 0.02))


class BuildReport(Job):
    job_name = "BuildReport"
    queue = "reports"

    def run(self, account_id: int, month: str) -> None:
        time.sleep(random.uniform(0.3, 1.5))


class PostWebhook(Job):
    job_name = "PostWebhook"
    queue = "webhooks"
    retry_interval = 20
    maximum_retry_count = 3

    def run(self, endpoint: str, event: str) -> None:
        time.sleep(random.uniform(0.01, 0.05))
        if "flaky" in endpoint and random.random() < 0.7:
            raise ConnectionError(f"POST {endpoint} timed out after 10 s (event {event})")


class ExportAccount(Job):
    job_name = "ExportAccount"
    """Runs until the screenshots are taken (the running page shows it)."""
    queue = "reports"

    def run(self, account_id: int) -> None:
        release.wait(600)


def feed(conn: Any, stop: threading.Event, minutes: float) -> None:
    started = time.monotonic()
    n = 0
    while not stop.is_set():
        phase = (time.monotonic() - started) / 60
        burst = int(40 + 35 * abs(((phase * 1.7) % 2) - 1) * random.uniform(0.5, 1.5))
        with bulk_enqueue(conn=conn):
            for _ in range(burst):
                n += 1
                kind = n % 10
                if kind < 4:
                    SendWelcomeEmail.enqueue(n, conn=conn)
                elif kind < 7:
                    ResizeImage.enqueue(n, [64, 256, 1024], conn=conn)
                elif kind < 9:
                    endpoint = ("https://hooks.example.com/flaky/orders" if n % 20 == 7
                                else "https://hooks.example.com/orders")
                    PostWebhook.enqueue(endpoint, f"order.{n}", conn=conn)
                elif n % 30 == 9:
                    BuildReport.enqueue(n % 97, "2026-11", conn=conn)
        stop.wait(random.uniform(2, 6))


def backlog(conn: Any) -> None:
    """What an operator would look at: a report backlog, scheduled mails, a
    running export, failures, a paused queue, cancelled jobs."""
    from que_core import control

    with bulk_enqueue(conn=conn):
        for i in range(120):
            BuildReport.enqueue(1000 + i, "2026-11", conn=conn)
    latest = conn.execute("SELECT id FROM que_jobs WHERE job_class = 'BuildReport' "
                          "ORDER BY id DESC LIMIT 4")  # still waiting: the backlog's last
    control.cancel_jobs([int(i) for (i,) in latest], conn=conn, reason="duplicate request")
    control.pause("webhooks", conn=conn, reason="hooks.example.com is down (INC-311)")
    with bulk_enqueue(conn=conn):
        for i in range(40):
            SendWelcomeEmail.enqueue(5000 + i, "reminder", conn=conn, tags=["campaign-12"],
                                     run_at=_later(3600 + 60 * i))
    ExportAccount.enqueue(42, conn=conn)
    conn.execute("INSERT INTO que_jobs (queue, job_class, args, error_count, "
                 "  last_error_message, last_error_backtrace, expired_at, job_schema_version) "
                 "VALUES ('webhooks', 'PostWebhook', "
                 "  '[\"https://hooks.example.com/gone\", \"order.77\"]', 16, "
                 "  'HTTPError: 410 Gone from https://hooks.example.com/gone', "
                 "  'File \"app/webhooks.py\", line 31, in run\n    response.raise_for_status()', "
                 "  now(), 2)")


def _later(seconds: float) -> Any:
    from datetime import datetime, timedelta, timezone

    return datetime.now(timezone.utc) + timedelta(seconds=seconds)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0,
                        help="demo traffic before the screenshots")
    args = parser.parse_args()
    import uvicorn
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    from que_core import throughput
    from que_core.web import create_app

    throughput.FLUSH_SECONDS = 2.0
    adapter = plugins.get_adapter("psycopg")
    OUT.mkdir(parents=True, exist_ok=True)
    with databases.temporary_database(adapter, databases.server_dsn()) as dsn:
        conn = adapter.connect(dsn)
        migrate(conn)
        worker = Worker(dsn, adapter=adapter, queues=["default", "mail", "reports", "webhooks"],
                        worker_priorities=[None] * 6, poll_interval=1.0)
        worker.start()
        stop = threading.Event()
        feeder = threading.Thread(target=feed, args=(adapter.connect(dsn), stop, args.minutes),
                                  daemon=True)
        feeder.start()
        print(f"demo traffic for {args.minutes:g} minutes ...", flush=True)
        time.sleep(args.minutes * 60)
        stop.set()
        feeder.join()
        backlog(conn)
        time.sleep(3)
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(create_app(dsn, adapter=adapter), host="127.0.0.1",
                                               port=port, log_level="warning"))
        threading.Thread(target=server.run, daemon=True).start()
        while not server.started:
            time.sleep(0.05)
        options = webdriver.ChromeOptions()
        for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--window-size=1280,860", "--hide-scrollbars"):
            options.add_argument(flag)
        browser = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
        base = f"http://127.0.0.1:{port}"
        try:
            ((failed_id,),) = conn.execute(
                "SELECT max(id) FROM que_jobs WHERE last_error_backtrace IS NOT NULL "
                "AND expired_at IS NULL")
            shots = [("overview", "/"), ("jobs", "/jobs?queue=webhooks"),
                     ("job", f"/jobs/{failed_id}" if failed_id else "/jobs"),
                     ("running", "/running"), ("workers", "/workers")]
            for name, path in shots:
                metrics = {"width": 1280, "height": 1400, "deviceScaleFactor": 1,
                           "mobile": False}
                browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
                browser.get(base + path)
                browser.find_element(By.TAG_NAME, "main")
                time.sleep(0.5)
                bottom = browser.execute_script(
                    "return document.querySelector('main').getBoundingClientRect().bottom")
                metrics["height"] = min(max(int(bottom) + 10, 300), 1400)
                browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
                time.sleep(0.3)
                browser.save_screenshot(str(OUT / f"web-{name}.png"))
                print(f"docs/img/web-{name}.png")
        finally:
            browser.quit()
            release.set()
            server.should_exit = True
            worker.stop(timeout=10)
            conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
