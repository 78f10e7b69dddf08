"""How dev.py test spreads the whole suite over pytest-xdist workers, and
when it leaves pytest's arguments alone (its runs themselves are CI's)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def dev() -> ModuleType:
    spec = importlib.util.spec_from_file_location("dev", ROOT / "dev.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(("cores", "workers"), [(1, 0), (2, 2), (4, 4), (64, 4), (None, 0)])
def test_one_worker_a_core_at_most_four(dev: ModuleType, monkeypatch: pytest.MonkeyPatch,
                                        cores: int | None, workers: int) -> None:
    monkeypatch.setattr(dev.os, "cpu_count", lambda: cores)
    assert dev.xdist_workers([]) == workers
    assert dev.xdist_workers(["-k", "retry", "-x"]) == workers


@pytest.mark.parametrize("args", [["-n", "0"], ["-n3"], ["--numprocesses=1"], ["--dist", "no"],
                                  ["-p", "no:xdist"], ["-pno:xdist"], ["--pdb"], ["-x", "--trace"]])
def test_arguments_that_choose_for_themselves(dev: ModuleType, monkeypatch: pytest.MonkeyPatch,
                                              args: list[str]) -> None:
    monkeypatch.setattr(dev.os, "cpu_count", lambda: 2)
    assert dev.xdist_workers(args) == 0


def test_only_the_whole_suite_is_spread(dev: ModuleType) -> None:
    assert dev.names_a_path(["tests/test_enqueue.py", "-x"])
    assert dev.names_a_path(["tests/test_enqueue.py::test_enqueue_inserts_a_job"])
    assert not dev.names_a_path(["-k", "retry", "-p", "no:cacheprovider"])
