"""docs/reliability.md is generated: it must be exactly what
tests/reliability/report.py renders from the run kept in docs/reliability-run/."""

from __future__ import annotations

import json
from pathlib import Path

from tests.reliability import report

RUN = report.ROOT / "docs" / "reliability-run"


def test_the_committed_page_is_the_rendering_of_the_committed_run(tmp_path: Path) -> None:
    out = tmp_path / "reliability.md"
    code = report.main(["--results", str(RUN / "results.jsonl"), "--junit",
                        str(RUN / "junit.xml"), "--output", str(out)])
    assert code == (1 if _failed_tests() else 0)
    assert out.read_text(encoding="utf-8") == report.DOC.read_text(encoding="utf-8"), (
        "docs/reliability.md differs from its rendering: regenerate it with "
        "python -m tests.reliability.report (see its Reproducing section)")


def _failed_tests() -> list[str]:
    _, outcomes, _, _ = report.load(RUN / "results.jsonl", RUN / "junit.xml")
    return sorted(t for t, s in outcomes.items() if s == "failed")


def test_the_committed_run_is_full_scale_covers_every_case_and_explains_its_failures() -> None:
    """The committed run is the latest full one, whatever it found: a failed
    test or a non-zero count stays on the page, and docs/reliability-run/notes.md
    must say what it was."""
    records = [json.loads(line) for line in (RUN / "results.jsonl").read_text().splitlines()]
    assert {r["scale"] for r in records} == {"full"}
    cases = {report._case_of(r["case"]) for r in records}
    missing = {c for c, _, _ in report.CASES if not c.startswith("100,000")} - cases
    assert not missing
    notes = report.RUN_NOTES.read_text(encoding="utf-8") if report.RUN_NOTES.exists() else ""
    for r in records:
        for key in report.ZERO_KEYS:
            if r.get(key, 0):
                assert r["test"].split("::")[-1] in notes, (r["case"], r["adapter"], key)
    for test in _failed_tests():
        assert test.split("::")[-1] in notes, test
    million = [r for r in records if r["case"].startswith("1,000,000")]
    assert sorted(r["adapter"] for r in million) == ["pg8000", "psycopg", "psycopg2"]
    assert all(r["waiting"] == 1_000_000 and r["worked"] > 0 for r in million)


def test_a_failed_test_or_a_nonzero_count_shows_in_the_page(tmp_path: Path) -> None:
    results = tmp_path / "results.jsonl"
    results.write_text(json.dumps({
        "case": "kill -9 of worker processes", "adapter": "psycopg", "scale": "default",
        "test": "tests/reliability/test_fault_kill9.py::test_kill_9_at_random_moments[psycopg]",
        "injected": 5, "jobs": 800, "job_runs": 812, "lost": 2, "double_run": 0,
    }) + "\n")
    junit = tmp_path / "junit.xml"
    junit.write_text(
        '<testsuites><testsuite time="12.0" timestamp="2026-12-01T10:00:00+00:00">'
        '<testcase classname="tests.reliability.test_fault_kill9" '
        'name="test_kill_9_at_random_moments[psycopg]"><failure message="lost"/></testcase>'
        "</testsuite></testsuites>")
    out = tmp_path / "page.md"
    assert report.main(["--results", str(results), "--junit", str(junit),
                        "--output", str(out)]) == 1
    page = out.read_text()
    assert "| kill -9 of worker processes | psycopg | 5 | 800 | 812 | 2 | 0 |" in page
    assert "0/1 passed" in page and "Tests: 0 passed, 1 failed" in page
    assert "- `tests/reliability/test_fault_kill9.py::test_kill_9_at_random_moments[psycopg]`" \
        in page
    assert "Run started 2026-12-01 10:00 UTC;" in page  # no environment.json: not claimed
