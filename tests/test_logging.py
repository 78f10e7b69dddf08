"""Logging: stdlib logging under que_core names, one line per job event,
--log-format text|json, --log-level, passwords masked, no print()."""

from __future__ import annotations

import ast
import io
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from conformance.fixtures import scalar, wait_until
from que_core import logs
from que_core.connection import Adapter, Connection
from tests.helpers import QueWork
from tests.test_cli_admin import ROOT, clean_env

PACKAGE = ROOT / "que_core"

JOBS_MODULE = '''
from que_core import Job

class Ok(Job):
    job_name = "logjobs.Ok"
    def run(self, n):
        pass

class Later(Job):
    job_name = "logjobs.Later"
    def run(self):
        self.retry_in(3600)

class Fails(Job):
    job_name = "logjobs.Fails"
    retry_interval = 0
    maximum_retry_count = 1
    def run(self):
        raise ValueError("no luck with postgresql://app:jobsecret@db/app")
'''


@pytest.fixture
def module_dir(tmp_path: Path) -> Path:
    (tmp_path / "logjobs.py").write_text(JOBS_MODULE, encoding="utf-8")
    return tmp_path


def _enqueue(db: Connection, job_class: str, args: list[Any]) -> int:
    rows = db.execute(
        "INSERT INTO que_jobs (job_class, args, job_schema_version) VALUES (%s, %s::jsonb, 2)"
        " RETURNING id", (job_class, json.dumps(args)))
    return int(rows[0][0])


@pytest.fixture
def work(
    conn: Connection, dsn: str, adapter: Adapter, module_dir: Path
) -> Iterator[Callable[..., QueWork]]:
    """Start `que work` of the logjobs module (on *dsn*, or *on*) with *flags*;
    return once its locker is registered. Killed at the end if still running."""
    started: list[QueWork] = []

    def start(*flags: str, on: str | None = None) -> QueWork:
        env = clean_env(PYTHONPATH=os.pathsep.join([str(module_dir), str(ROOT)]))
        worker = QueWork("--dsn", on or dsn, "--adapter", adapter.name, "-i", "0.2", *flags,
                         "logjobs", env=env)
        started.append(worker)
        wait_until(lambda: scalar(conn, "SELECT count(*) FROM que_lockers") == 1, within=20)
        return worker

    yield start
    for worker in started:
        if worker.proc.poll() is None:
            worker.stop()


def test_json_lines_one_per_job_event(conn: Connection, work: Callable[..., QueWork]) -> None:
    worker = work("--log-format", "json")
    try:
        ok = _enqueue(conn, "logjobs.Ok", [1])
        later = _enqueue(conn, "logjobs.Later", [])
        fails = _enqueue(conn, "logjobs.Fails", [])

        def events() -> list[dict[str, Any]]:
            return [e for e in map(json.loads, list(worker.lines)) if "que_event" in e]

        wait_until(lambda: len([e for e in events() if e["que_event"] != "worker_started"]) >= 4,
                 within=30)
        time.sleep(0.5)  # nothing more should come
    finally:
        assert worker.stop() == 0
    parsed = [json.loads(line) for line in worker.lines]  # every line is one JSON object
    for entry in parsed:
        assert {"ts", "level", "logger", "message"} <= set(entry)
        assert entry["logger"].startswith("que_core")
        assert entry["ts"].endswith("+00:00")
    by_job = {}
    for e in parsed:
        if e.get("que_event") in ("worked", "retried", "errored", "expired"):
            by_job.setdefault(e["job_id"], []).append(e)
    assert [e["que_event"] for e in by_job[ok]] == ["worked"]
    assert [e["que_event"] for e in by_job[later]] == ["retried"]
    assert [e["que_event"] for e in by_job[fails]] == ["errored", "expired"]
    worked = by_job[ok][0]
    assert worked["level"] == "info"
    assert worked["logger"] == "que_core.worker"
    assert worked["job_class"] == "logjobs.Ok"
    assert worked["queue"] == "default"
    assert worked["outcome"] == "succeeded"
    assert 0 <= worked["duration"] < 5
    errored, expired = by_job[fails]
    assert errored["level"] == "warning"
    assert errored["outcome"] == "errored"
    assert errored["retry_in"] == 0
    assert expired["outcome"] == "expired"
    assert expired["retry_in"] is None
    assert "ValueError: no luck" in errored["error"]
    assert "jobsecret" not in "\n".join(worker.lines)
    assert "postgresql://app:****@db/app" in errored["message"]
    assert by_job[later][0]["outcome"] == "retried"


def test_text_lines_and_log_level(conn: Connection, work: Callable[..., QueWork]) -> None:
    worker = work("--log-level", "warning")
    try:
        _enqueue(conn, "logjobs.Ok", [1])
        fails = _enqueue(conn, "logjobs.Fails", [])
        wait_until(lambda: sum("job expired" in ln for ln in worker.lines) == 1, within=30)
        wait_until(lambda: scalar(conn, "SELECT count(*) FROM que_jobs WHERE job_class = "
                                      "'logjobs.Ok'") == 0)
    finally:
        assert worker.stop() == 0
    text = "\n".join(worker.lines)
    assert "job worked" not in text  # INFO is below --log-level warning
    assert "worker started" not in text
    line = next(ln for ln in worker.lines if "job errored" in ln)
    assert " WARNING que_core.worker: job errored: logjobs.Fails " in line
    assert f"id={fails} queue=default duration=" in line
    assert "outcome=errored" in line
    assert "jobsecret" not in text


def test_worker_start_line_masks_the_password(dsn: str, work: Callable[..., QueWork]) -> None:
    # Trust auth ignores the password. The embedded server's URL already has
    # an empty one ("postgres:@"); the shared server's has none ("postgres@").
    user_dsn = dsn.replace("postgres:@", "postgres@", 1).replace(
        "postgres@", "postgres:trustme@", 1
    )
    assert "trustme" in user_dsn
    worker = work(on=user_dsn)
    try:
        wait_until(lambda: any("worker started" in ln for ln in worker.lines))
    finally:
        assert worker.stop() == 0
    text = "\n".join(worker.lines)
    assert "trustme" not in text
    assert "postgres:****@" in text


# -- in process -------------------------------------------------------------------------


def _record(msg: str, *args: Any, **extra: Any) -> logging.LogRecord:
    logger = logging.getLogger("que_core.test")
    return logger.makeRecord("que_core.test", logging.INFO, __file__, 1, msg, args, None,
                             extra=extra)


def test_json_formatter() -> None:
    record = _record("connecting to %s", "postgresql://u:pw1@h/d", que_event="x", job_id=3,
                     dsn="host=h password=pw2", when=object())
    out = json.loads(logs.JsonFormatter().format(record))
    assert out["message"] == "connecting to postgresql://u:****@h/d"
    assert out["level"] == "info"
    assert out["logger"] == "que_core.test"
    assert out["que_event"] == "x"
    assert out["job_id"] == 3
    assert out["dsn"] == "host=h password=****"
    assert "when" in out


def test_json_formatter_includes_the_traceback() -> None:
    try:
        raise RuntimeError("at postgresql://u:pw3@h/d")
    except RuntimeError:
        record = logging.getLogger("que_core.t").makeRecord(
            "que_core.t", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    out = json.loads(logs.JsonFormatter().format(record))
    assert "RuntimeError: at postgresql://u:****@h/d" in out["exc_info"]
    assert "pw3" not in json.dumps(out)


def test_text_formatter_masks() -> None:
    line = logs.TextFormatter().format(_record("dsn %s", "user=u password=secret host=h"))
    assert line.endswith("INFO que_core.test: dsn user=u password=**** host=h")


def test_setup_replaces_its_own_handler() -> None:
    root = logging.getLogger()
    before = list(root.handlers)
    level = root.level
    stream = io.StringIO()
    try:
        logs.setup("debug", "json", stream)
        logs.setup("warning", "text", stream)
        assert len(root.handlers) == len(before) + 1
        logging.getLogger("que_core.x").info("hidden")
        logging.getLogger("que_core.x").warning("shown")
        assert "shown" in stream.getvalue()
        assert "hidden" not in stream.getvalue()
    finally:
        for h in list(root.handlers):
            if h not in before:
                root.removeHandler(h)
        root.setLevel(level)
        logs._installed = None


def _calls() -> Iterator[tuple[Path, ast.Call]]:
    """Every call in the library's modules, with its module."""
    for path in sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call):
                yield path, node


def test_no_print_in_library_code() -> None:
    offenders = [f"{path.relative_to(ROOT)}:{node.lineno}" for path, node in _calls()
                 if isinstance(node.func, ast.Name) and node.func.id == "print"]
    assert offenders == []


def test_loggers_are_named_under_que_core() -> None:
    names = [(path.name, node.args[0].value) for path, node in _calls()
             if isinstance(node.func, ast.Attribute) and node.func.attr == "getLogger"
             and node.args and isinstance(node.args[0], ast.Constant)]
    assert names
    # embedded.py only quiets pgserver's own logger (its INFO lines are noise).
    quieted = {("embedded.py", "pgserver")}
    assert [n for n in names if not str(n[1]).startswith("que_core") and n not in quieted] == []
