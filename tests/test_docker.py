"""docker/: there is no Docker engine here, so these tests read the Dockerfile
and the compose file, check what they promise (services, commands,
healthchecks, environment), and run the compose services' commands as plain
processes against the test server, so the files cannot rot unnoticed."""

from __future__ import annotations

import json
import re
import shlex
import signal
import subprocess
import sys
import urllib.request
from typing import Any

import pytest

from conformance.fixtures import free_port, scalar, wait_until
from que_core import settings_file
from que_core.connection import Adapter, Connection
from tests.helpers import job_count
from tests.test_cli_admin import ROOT, clean_env

yaml = pytest.importorskip("yaml")

DOCKER = ROOT / "docker"


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in (DOCKER / "Dockerfile").read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = pending + line
        pending = ""
        instruction, _, args = full.partition(" ")
        out.append((instruction.upper(), args.strip()))
    assert not pending
    return out


def instructions(name: str) -> list[str]:
    return [args for inst, args in dockerfile() if inst == name]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load((DOCKER / "compose.yaml").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def env_of(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


# -- Dockerfile ------------------------------------------------------------------


def test_dockerfile_base_user_and_entrypoint() -> None:
    assert instructions("FROM") == ["python:3.12-slim"]
    users = instructions("USER")
    assert users and users[-1] not in ("root", "0")
    runs = " ".join(instructions("RUN"))
    assert f"useradd --system --uid {users[-1]}" in runs or re.search(
        rf"useradd .*\b{users[-1]}\b", runs)
    # The last USER comes after every RUN: nothing installs as root after it.
    order = [inst for inst, _ in dockerfile()]
    assert max(i for i, inst in enumerate(order) if inst == "RUN") < max(
        i for i, inst in enumerate(order) if inst == "USER")
    assert [json.loads(e) for e in instructions("ENTRYPOINT")] == [["que"]]
    assert json.loads(instructions("CMD")[-1]) == ["--help"]


def test_dockerfile_installs_the_core_the_adapter_and_metrics() -> None:
    runs = " ".join(instructions("RUN"))
    pip = re.search(r"pip install (.+?)(&&|$)", runs)
    assert pip
    targets = shlex.split(pip.group(1))
    assert "/src/que-core[metrics]" in targets
    assert "/src/que-core/que_adapters/psycopg[binary]" in targets
    copies = [shlex.split(c) for c in instructions("COPY")]
    assert [".", "/src/que-core"] in copies
    for *sources, _dest in copies:
        for source in sources:
            assert (ROOT / source).exists(), source
    assert (ROOT / "que_adapters" / "psycopg" / "pyproject.toml").exists()
    assert "que_core" in (ROOT / "pyproject.toml").read_text()
    ignore = (DOCKER / "Dockerfile.dockerignore").read_text().split()
    assert ".git" in ignore
    env = " ".join(instructions("ENV"))
    assert "PYTHONPATH=/app" in env
    assert "PYTHONUNBUFFERED=1" in env


def test_dockerfile_exposes_the_workers_metrics_port(compose: dict[str, Any]) -> None:
    exposed = {int(p) for e in instructions("EXPOSE") for p in e.split()}
    command = compose["services"]["worker"]["command"]
    port = int(command[command.index("--metrics-port") + 1])
    assert port in exposed
    assert f"{port}:{port}" in compose["services"]["worker"]["ports"]


# -- compose.yaml --------------------------------------------------------------------


def test_compose_services(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"postgres", "migrate", "worker", "enqueuer"}
    for name in ("migrate", "worker", "enqueuer"):
        s = services[name]
        assert s["image"] == "que-core:dev"
        build = s["build"]
        assert (DOCKER / build["context"] / build["dockerfile"]).resolve() == (
            DOCKER / "Dockerfile").resolve()
    assert "pgdata" in compose["volumes"]


def test_postgres_has_a_healthcheck_the_others_wait_for(compose: dict[str, Any]) -> None:
    services = compose["services"]
    pg = services["postgres"]
    assert pg["image"] == "postgres:16"
    env = env_of(pg)
    check = pg["healthcheck"]
    test = " ".join(check["test"])
    assert check["test"][0] in ("CMD", "CMD-SHELL")
    assert "pg_isready" in test
    assert f"-U {env['POSTGRES_USER']}" in test
    assert f"-d {env['POSTGRES_DB']}" in test
    for key in ("interval", "timeout", "retries"):
        assert key in check
    assert services["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    for name in ("worker", "enqueuer"):
        assert services[name]["depends_on"] == {
            "migrate": {"condition": "service_completed_successfully"}}


def test_commands(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["migrate"]["command"] == ["migrate"]
    assert services["migrate"]["restart"] == "no"  # one shot
    worker = services["worker"]["command"]
    assert worker[0] == "work"
    assert worker[-1] == "demo_jobs"
    assert "--metrics-port" in worker
    assert services["enqueuer"]["entrypoint"] == ["python", "-m", "demo_jobs"]
    assert "--count" in services["enqueuer"]["command"]
    # The worker's health is its metrics endpoint.
    health = " ".join(services["worker"]["healthcheck"]["test"])
    port = worker[worker.index("--metrics-port") + 1]
    assert f"127.0.0.1:{port}/metrics" in health


def test_environment(compose: dict[str, Any]) -> None:
    services = compose["services"]
    pg = env_of(services["postgres"])
    expected = (f"postgresql://{pg['POSTGRES_USER']}:{pg['POSTGRES_PASSWORD']}@postgres:5432/"
                f"{pg['POSTGRES_DB']}")
    for name in ("migrate", "worker", "enqueuer"):
        env = env_of(services[name])
        assert env["DATABASE_URL"] == expected
        known = {var for spec in settings_file.SPECS for var in spec.env}
        assert {k for k in env if k.startswith("QUE_")} <= known, name
        # Every value is one que accepts.
        settings_file.resolve({}, environ=env, pyproject=False)
    worker = env_of(services["worker"])
    assert set(worker["QUE_QUEUES"].split(",")) >= {"default", "reports"}
    grace = services["worker"]["stop_grace_period"]
    assert float(worker["QUE_SHUTDOWN_TIMEOUT"]) < float(grace.rstrip("s"))


def test_demo_jobs_queues_are_worked(compose: dict[str, Any]) -> None:
    sys.path.insert(0, str(DOCKER))
    try:
        import demo_jobs
    finally:
        sys.path.remove(str(DOCKER))
    queues = {cls.queue for cls in (demo_jobs.Greet, demo_jobs.Resize, demo_jobs.Report,
                                     demo_jobs.Flaky)}
    worked = set(env_of(compose["services"]["worker"])["QUE_QUEUES"].split(","))
    assert queues <= worked


# -- the services' commands, run as processes against the test server --------------------


def _service_env(compose: dict[str, Any], name: str, dsn: str, adapter: Adapter) -> dict[str, str]:
    env = env_of(compose["services"][name])
    env["DATABASE_URL"] = dsn
    return clean_env(**env, QUE_ADAPTER=adapter.name,
                     PYTHONPATH=f"{DOCKER}:{ROOT}")  # the image's /app, and que_core


def test_the_stack_runs(
    compose: dict[str, Any], empty_dsn: str, adapter: Adapter
) -> None:
    pytest.importorskip("psycopg", reason="the image's demo enqueuer uses psycopg")
    services = compose["services"]
    migrate = subprocess.run(
        [sys.executable, "-m", "que_core.cli", *services["migrate"]["command"]],
        env=_service_env(compose, "migrate", empty_dsn, adapter), cwd=DOCKER,
        capture_output=True, text=True, timeout=60,
    )
    assert migrate.returncode == 0, migrate.stderr
    assert "to 7" in migrate.stdout

    enqueuer_args = list(services["enqueuer"]["command"])
    enqueuer_args[enqueuer_args.index("--every") + 1] = "0"  # one batch, then exit
    count = int(enqueuer_args[enqueuer_args.index("--count") + 1])
    enqueue = subprocess.run(
        [sys.executable, *services["enqueuer"]["entrypoint"][1:], *enqueuer_args],
        env=_service_env(compose, "enqueuer", empty_dsn, adapter), cwd=DOCKER,
        capture_output=True, text=True, timeout=60,
    )
    assert enqueue.returncode == 0, enqueue.stderr
    assert f"enqueued {count} demo jobs" in enqueue.stderr

    conn: Connection = adapter.connect(empty_dsn)
    port = free_port()
    command = list(services["worker"]["command"])
    command[command.index("--metrics-port") + 1] = str(port)
    worker = subprocess.Popen(
        [sys.executable, "-m", "que_core.cli", *command],
        env=_service_env(compose, "worker", empty_dsn, adapter), cwd=DOCKER,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert job_count(conn) == count
        wait_until(lambda: job_count(conn) == 0, within=60, interval=0.2)

        def scraped() -> str | None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=3) as r:
                    return str(r.read().decode())
            except OSError:
                return None

        text = wait_until(scraped, within=20)
        assert "que_jobs_worked_total" in text
        assert scalar(conn, "SELECT queues FROM que_lockers") == ["default", "reports"]
    finally:
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(30)
        assert worker.stderr is not None
        logs = worker.stderr.read()
        worker.stderr.close()
        conn.close()
    assert code == 0, logs
    lines = [json.loads(line) for line in logs.splitlines() if line.strip()]  # JSON logs
    assert sum(1 for e in lines if e.get("que_event") == "worked") == count
