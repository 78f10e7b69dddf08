"""The overview's last-hour chart, as numbers for an SVG drawn by the template
(no script: it refreshes with the overview's live part)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

MINUTES = 60
WIDTH, HEIGHT = 600, 120  # the plot area, in SVG units
BAR = WIDTH / MINUTES


@dataclass
class Bar:
    x: float
    label: str  # the minute, HH:MM UTC
    done: int
    failed: int
    done_height: float
    failed_height: float
    latency_mean: float | None
    latency_max: float | None


@dataclass
class Chart:
    bars: list[Bar] = field(default_factory=list)
    most_runs: int = 0
    most_latency: float = 0.0
    #: The mean latency line, SVG polyline points ("x,y ...").
    latency_points: str = ""
    total_done: int = 0
    total_failed: int = 0
    width: int = WIDTH
    height: int = HEIGHT
    bar_width: float = BAR


def build(rows: list[dict[str, Any]], now: float) -> Chart:
    """*rows*: :func:`que_core.admin.throughput`'s minutes; *now*: epoch seconds."""
    by_minute = {int(r["minute"]): r for r in rows}
    last = int(now // 60) * 60
    minutes = [last - 60 * i for i in range(MINUTES - 1, -1, -1)]
    chart = Chart()
    chart.most_runs = max([r["done"] + r["failed"] for r in rows] + [0])
    chart.most_latency = max([r["latency_mean"] or 0.0 for r in rows] + [0.0])
    points = []
    for i, minute in enumerate(minutes):
        r = by_minute.get(minute, {})
        done, failed = int(r.get("done", 0)), int(r.get("failed", 0))
        scale = HEIGHT / chart.most_runs if chart.most_runs else 0.0
        mean = r.get("latency_mean")
        chart.bars.append(Bar(
            x=i * BAR,
            label=datetime.fromtimestamp(minute, timezone.utc).strftime("%H:%M"),
            done=done, failed=failed,
            done_height=done * scale, failed_height=failed * scale,
            latency_mean=mean, latency_max=r.get("latency_max"),
        ))
        chart.total_done += done
        chart.total_failed += failed
        if mean is not None and chart.most_latency > 0:
            y = HEIGHT - mean / chart.most_latency * HEIGHT
            points.append(f"{i * BAR + BAR / 2:.1f},{y:.1f}")
    chart.latency_points = " ".join(points)
    return chart
