"""The worker's per-minute tallies (que_core.throughput): what the dashboard's
chart is drawn from. Their flush to the table is tested with a real worker in
tests/test_web.py (test_chart_shows_what_workers_ran)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from que_core import throughput


def test_runs_are_summed_as_they_come_not_kept() -> None:
    t = throughput.Throughput()
    due = datetime.now(timezone.utc) - timedelta(seconds=2)
    for i in range(30_000):
        t.observe(("a", "b", "c")[i % 3], due, 0.0, failed=i % 10 == 0)
    # One tally per minute and queue, whatever the number of runs.
    assert len(t._sums) <= 6
    rows = t.take()
    assert sum(r["done"] + r["failed"] for r in rows) == 30_000
    assert sum(r["failed"] for r in rows) == 3_000
    assert {r["queue"] for r in rows} == {"a", "b", "c"}
    assert all(2 <= r["latency_max"] < 30 for r in rows)
    assert 2 * 30_000 <= sum(r["latency_sum"] for r in rows) < 30 * 30_000
    assert t.take() == []  # taken: forgotten


def test_tallies_stop_at_a_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(throughput, "MOST_KEPT", 2)
    t = throughput.Throughput()
    for name in ("a", "b", "c", "a"):
        t.observe(name, None, 0.0, failed=False)
    rows = t.take()
    assert sorted((r["queue"], r["done"]) for r in rows) == [("a", 2), ("b", 1)]
    assert all(r["latency_max"] == 0.0 for r in rows)  # no run_at: no latency
