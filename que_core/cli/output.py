"""How the ``que`` commands print: JSON, aligned tables, ages, short texts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import click

from que_core.admin import ACTION_WORDS


def echo_json(value: Any) -> None:
    from que_core.printable import dumps

    click.echo(dumps(value))


#: The table's ages: ``42.0s``, ``1.5m``, ``2.0h``, ``3.0d``.
_AGE_STEPS = ((60, 1, "{:.1f}s"), (3600, 60, "{:.1f}m"), (86400, 3600, "{:.1f}h"))


def age(seconds: float | None) -> str:
    from que_core.printable import rough_age

    return rough_age(seconds, _AGE_STEPS, (86400, "{:.1f}d"))


def short(text: str | None, width: int) -> str | None:
    """*text* on one line, escaped, cut to *width* characters."""
    if text is None:
        return None
    from que_core.printable import escape

    text = escape(" ".join(text.split()))
    return text if len(text) <= width else text[: width - 1] + "…"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], right: set[int]) -> str:
    """An aligned text table; the columns in *right* are right-aligned."""
    from que_core.printable import escape

    cells = [[str(h) for h in headers],
             *[["-" if v is None else escape(str(v)) for v in r] for r in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for row in cells:
        parts = [
            row[i].rjust(widths[i]) if i in right else row[i].ljust(widths[i])
            for i in range(len(headers))
        ]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


def render_stats(s: Any) -> str:
    """``que stats``'s text: jobs per queue, class and state, then the workers."""
    from que_core.admin import STATES
    from que_core.printable import escape

    headers = ["QUEUE", "CLASS", *(n.upper() for n in STATES), "OLDEST READY"]
    rows = [
        [r.queue, r.job_class, *(getattr(r, n) for n in STATES), age(r.oldest_ready_age)]
        for r in s.rows
    ]
    if s.rows:
        t = s.totals()
        rows.append(["(all)", "", *(getattr(t, n) for n in STATES), age(t.oldest_ready_age)])
    right = set(range(2, len(headers)))
    out = [table(headers, rows, right) if s.rows else "no jobs"]
    threads = sum(lk.worker_count for lk in s.lockers)
    out.append(f"workers: {len(s.lockers)} process(es), {threads} thread(s)")
    for lk in s.lockers:
        out.append(escape(
            f"  pid {lk.process_pid} on {lk.hostname}: {lk.worker_count} threads, "
            f"queues {','.join(lk.queues)}{'' if lk.listening else ' (not listening)'}"
        ))
    return "\n".join(out)


#: What each bulk action did, and how its confirmation asks.
VERBS = ACTION_WORDS


def bulk_report(action: str, result: Any, missing: list[int], as_json: bool) -> None:
    if as_json:
        echo_json({**result.to_dict(), "not_found": missing})
        return
    click.echo(result.summary())

