"""que web in a real browser: headless Chromium (Debian's chromium and
chromium-driver, which .ci/run installs) driven by Selenium, against the
dashboard served by uvicorn and a worker running in this process."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("selenium")
uvicorn = pytest.importorskip("uvicorn")

from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import (  # noqa: E402
    NoSuchElementException,
    StaleElementReferenceException,
    WebDriverException,
)
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from que_core import Job, Worker, plugins  # noqa: E402
from que_core.connection import Connection  # noqa: E402
from que_core.web import create_app  # noqa: E402
from tests.helpers import migrated_dsn, session  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver") or (
    "/usr/bin/chromedriver" if Path("/usr/bin/chromedriver").exists() else None)

pytestmark = pytest.mark.skipif(
    CHROMIUM is None or DRIVER is None,
    reason="needs Debian's chromium and chromium-driver (apt-get install -y chromium "
           "chromium-driver; .ci/run installs them)",
)


class BrowserRetryJob(Job):
    """Fails until told otherwise; then finishes (its row stays, finished)."""

    ok = threading.Event()

    def run(self, who: str) -> None:
        if not self.ok.is_set():
            raise RuntimeError(f"not yet, {who}")
        self.finish()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


browser_dsn = migrated_dsn("browser_dsn")


@pytest.fixture
def conn(browser_dsn: str) -> Iterator[Connection]:
    yield from session(plugins.get_adapter("psycopg"), browser_dsn)


@pytest.fixture
def served(browser_dsn: str) -> Iterator[str]:
    """The dashboard at http://127.0.0.1:PORT (no password: loopback only)."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(
        create_app(browser_dsn, adapter="psycopg", refresh=0.5),
        host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


@pytest.fixture
def browser() -> Iterator[Any]:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,900", "--disable-extensions", "--no-first-run"):
        options.add_argument(arg)
    try:
        driver = webdriver.Chrome(service=Service(str(DRIVER)), options=options)
    except WebDriverException as exc:
        pytest.skip(f"headless Chromium does not start here: {exc.msg}")
    driver.implicitly_wait(0)
    yield driver
    driver.quit()


def wait(driver: Any, what: Any, timeout: float = 20) -> Any:
    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(what)


def test_overview_to_queue_to_job_retry_and_see_it_run(
    browser: Any, served: str, conn: Connection, browser_dsn: str, tmp_path: Path,
) -> None:
    BrowserRetryJob.ok.clear()
    BrowserRetryJob.retry_interval = 3600  # type: ignore[assignment]
    job = BrowserRetryJob.enqueue("<script>window.pwned = 1</script>", conn=conn,
                                  queue="browser")
    worker = Worker(browser_dsn, adapter="psycopg", queues=["browser"], poll_interval=0.2)
    worker.start()
    try:
        # It fails once, and waits an hour for its retry.
        wait(browser, lambda d: conn.execute(
            "SELECT error_count FROM que_jobs WHERE id = %s", (job.id,))[0][0] == 1)

        browser.get(served + "/")
        assert browser.title.startswith("Overview")
        cells = wait(browser, lambda d: live_cells(d, 'tr[data-queue="browser"]'))
        assert cells[:6] == ["browser", "0", "0", "0", "1", "0"]
        browser.save_screenshot(str(tmp_path / "overview.png"))

        click_live(browser, 'tr[data-queue="browser"] a.queue')
        wait(browser, lambda d: d.title.startswith("Jobs"))
        assert "queue=browser" in browser.current_url
        links = browser.find_elements(By.CSS_SELECTOR, "a.job-link")
        assert [a.text for a in links] == [str(job.id)]
        links[0].click()

        wait(browser, lambda d: d.title.startswith(f"Job {job.id}"))
        assert browser.find_element(By.ID, "job-state").text == "errored"
        # Hostile args render as text, and ran nothing.
        assert "<script>window.pwned = 1</script>" in browser.find_element(By.ID, "args").text
        assert "RuntimeError: not yet" in browser.find_element(By.ID, "error").text
        assert browser.execute_script("return window.pwned === undefined")
        browser.save_screenshot(str(tmp_path / "job-errored.png"))

        BrowserRetryJob.ok.set()
        browser.find_element(By.ID, "retry").click()
        notice = wait(browser, lambda d: d.find_elements(By.ID, "notice"))
        assert notice[0].text == "retried 1 job"

        def finished(d: Any) -> bool:
            d.refresh()
            return bool(d.find_element(By.ID, "job-state").text == "finished")

        wait(browser, finished)
        browser.save_screenshot(str(tmp_path / "job-finished.png"))
    finally:
        worker.stop(timeout=10)
    for name in ("overview.png", "job-errored.png", "job-finished.png"):
        assert (tmp_path / name).stat().st_size > 10_000, name


def test_counts_and_running_list_refresh_without_a_reload(
    browser: Any, served: str, conn: Connection, browser_dsn: str, tmp_path: Path,
) -> None:
    browser.get(served + "/")
    browser.execute_script("window.notReloaded = true")
    assert not browser.find_elements(By.CSS_SELECTOR, 'tr[data-queue="later"]')
    conn.execute("INSERT INTO que_jobs (queue, job_class, job_schema_version) "
                 "VALUES ('later', 'Job', 2), ('later', 'Job', 2)")
    row = wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, 'tr[data-queue="later"]'))
    assert [td.text for td in row[0].find_elements(By.TAG_NAME, "td")][:2] == ["later", "2"]
    assert browser.execute_script("return window.notReloaded === true")

    browser.get(served + "/running")
    browser.execute_script("window.notReloaded = true")
    ((job_id,),) = conn.execute("SELECT min(id) FROM que_jobs")
    holder = plugins.get_adapter("psycopg").connect(browser_dsn)
    try:
        holder.execute("SELECT pg_advisory_lock(%s)", (job_id,))
        link = wait(browser, lambda d: d.find_elements(
            By.CSS_SELECTOR, f'#running-jobs a[href$="/jobs/{job_id}"]'))
        assert link
        browser.save_screenshot(str(tmp_path / "running.png"))
    finally:
        holder.close()
    wait(browser, lambda d: not d.find_elements(
        By.CSS_SELECTOR, f'#running-jobs a[href$="/jobs/{job_id}"]'))
    assert browser.execute_script("return window.notReloaded === true")


def test_bulk_retry_asks_first(browser: Any, served: str, conn: Connection) -> None:
    for _ in range(3):
        conn.execute("INSERT INTO que_jobs (queue, job_class, run_at, error_count, "
                     "  last_error_message, job_schema_version) "
                     "VALUES ('bulk', 'Job', now() + interval '1 hour', 1, 'x', 2)")
    browser.get(served + "/jobs?queue=bulk")
    browser.find_element(By.CSS_SELECTOR, 'form.bulk button[value="retry"]').click()
    question = wait(browser, lambda d: d.find_elements(By.ID, "question"))
    assert question[0].text == "Run 3 jobs now?"
    assert conn.execute("SELECT count(*) FROM que_jobs WHERE run_at <= now()") == [(0,)]
    browser.find_element(By.ID, "confirm").click()
    notice = wait(browser, lambda d: d.find_elements(By.ID, "notice"))
    assert notice[0].text == "retried 3 jobs"
    assert conn.execute("SELECT count(*) FROM que_jobs WHERE run_at <= now()") == [(3,)]


def live_cells(driver: Any, selector: str) -> list[str] | None:
    """The cells' text of a live part's row (None while its refresh replaces it)."""
    try:
        row = driver.find_element(By.CSS_SELECTOR, selector)
        return [td.text for td in row.find_elements(By.TAG_NAME, "td")]
    except (StaleElementReferenceException, NoSuchElementException):
        return None


def click_live(driver: Any, selector: str) -> None:
    """Click an element of a live part, which its refresh may replace under us."""
    def clicked(d: Any) -> bool:
        try:
            d.find_element(By.CSS_SELECTOR, selector).click()
        except (StaleElementReferenceException, NoSuchElementException):
            return False
        return True

    wait(driver, clicked)


def test_pause_a_queue_from_the_overview_and_see_the_badge(
        browser: Any, served: str, conn: Connection, tmp_path: Path) -> None:
    from que_core import control

    conn.execute("INSERT INTO que_jobs (queue, job_class, job_schema_version) "
                 "VALUES ('mail', 'Job', 2)")
    browser.get(served + "/")
    row = '#queue-counts tr[data-queue="mail"]'
    assert not browser.find_elements(By.CSS_SELECTOR, f"{row} .badge.paused")
    click_live(browser, f"{row} td.paused button")
    question = wait(browser, lambda d: d.find_elements(By.ID, "question"))
    assert question[0].text.startswith("Pause queue mail: ")
    assert control.paused_since("mail", conn=conn) is None
    browser.find_element(By.ID, "reason").send_keys("<script>alert(1)</script> deploy")
    browser.find_element(By.ID, "confirm").click()
    notice = wait(browser, lambda d: d.find_elements(By.ID, "notice"))
    assert notice[0].text.startswith("paused queue mail")
    badge = wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, f"{row} .badge.paused"))
    assert badge[0].text == "paused"
    cell = browser.find_element(By.CSS_SELECTOR, f"{row} td.paused").text
    assert "<script>alert(1)</script> deploy" in cell and "Resume…" in cell  # shown as text
    assert control.paused_since("mail", conn=conn) is not None
    browser.save_screenshot(str(tmp_path / "overview-paused.png"))
    assert (tmp_path / "overview-paused.png").stat().st_size > 0
    # The badge survives the live refresh, and resuming takes it away.
    refreshed = browser.find_element(By.ID, "overview-live").get_attribute("data-refreshed")
    wait(browser, lambda d: d.find_element(By.ID, "overview-live").get_attribute(
        "data-refreshed") not in (None, refreshed))
    click_live(browser, f"{row} td.paused button")
    wait(browser, lambda d: d.find_elements(By.ID, "confirm"))[0].click()
    wait(browser, lambda d: d.find_elements(By.ID, "notice"))
    assert not browser.find_elements(By.CSS_SELECTOR, f"{row} .badge.paused")
    assert control.paused_since("mail", conn=conn) is None
