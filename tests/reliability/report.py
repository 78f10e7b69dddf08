"""Run the reliability suite and write docs/reliability.md from its output.

    python -m tests.reliability.report            # the default (short) run
    python -m tests.reliability.report --full     # QUE_RELIABILITY=full: the figures in the doc
    python -m tests.reliability.report --results R.jsonl --junit J.xml   # render a past run

The server is $QUE_TEST_DSN (or $DATABASE_URL), else the embedded one, as for
the rest of the tests; the PostgreSQL-restart case starts a throwaway server
of its own. Each case appends its figures to $QUE_RELIABILITY_RESULTS (one
JSON object per line, see harness.record); pytest's JUnit XML says which
tests passed. Arguments after ``--`` go to pytest.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "reliability.md"

#: Table order, and what each case does (matched by prefix of the case name).
CASES: list[tuple[str, str, str]] = [
    ("kill -9 of worker processes", "fault",
     "3 (full: 4) `que work` processes work 800 (full: 6,000) jobs per adapter, ~8% slow "
     "(0.2-1 s), ~3% failing once, more arriving one by one; at random moments one process "
     "is frozen (SIGSTOP, time noted) and killed (SIGKILL), and a new one started; "
     "5 (full: 40) kills per adapter."),
    ("pg_terminate_backend of locker and job sessions", "fault",
     "3 in-process workers (4 threads each) work 200 (full: 3,000) jobs, half of them slow; "
     "10 (full: 80) times, `pg_terminate_backend` of a busy worker's locker session, of a "
     "session running a job, or of any worker session (listener, idle ones)."),
    ("LISTEN connection lost", "fault",
     "The listener's session is terminated and every reconnect refused, or the listener "
     "thread dies; jobs enqueued afterwards must be found by polling (interval 0.3 s)."),
    ("PostgreSQL restart", "fault",
     "A throwaway server (initdb into a temporary directory, own port) with 3 `que work` "
     "processes and 300 (full: 3,000) jobs is restarted 2 (full: 8) times, alternating "
     "`pg_ctl -m fast` and `-m immediate` (crash and recovery)."),
    ("job hanging past the shutdown deadline", "fault",
     "A job hangs for 3 s; the worker is stopped with a 0.5 s deadline; a second worker "
     "takes the job at once while the first thread still hangs, then the hung thread tries "
     "to commit."),
    ("job whose error handling raises", "fault",
     "Exceptions whose `str()`/`repr()` raise, KeyboardInterrupt, a rollback on a dead "
     "session, `retry_delay` raising or returning NaN, infinity, 1e300, -5 or a string."),
    ("job that closes or breaks its own session", "fault",
     "After (or instead of) its effect a job closes its connection, terminates its own "
     "backend, leaves a transaction open (read-only or written), leaves it aborted, sets "
     "`search_path`, read-only, 1 ms timeouts, unlocks all advisory locks, turns "
     "autocommit off; the next job runs on the same thread."),
    ("two runs resolving one job", "fault",
     "The kill -9 race reproduced directly: run B's `destroy()` waits for run A's commit."),
    ("1,000,000 waiting jobs and dead tuples", "scale",
     "1,000,000 waiting jobs bulk-inserted, 500,000 deleted jobs ahead of them in the poll "
     "index (autovacuum off), first with a REPEATABLE READ transaction holding them visible; "
     "lock query timed; 2 `que work` processes work for 30 s."),
    ("100,000 waiting jobs and dead tuples", "scale",
     "The default run's version: 100,000 waiting jobs, 100,000 dead tuples, 8 s of work, "
     "one adapter."),
    ("arbitrary JSON args and kwargs round-trip", "input",
     "Hypothesis: nested JSON values (big ints, any float, unicode) as args and kwargs, "
     "through enqueue and bulk enqueue, run by a real worker, compared type-strictly."),
    ("NUL / lone surrogate refused at enqueue", "input",
     "Hypothesis: a NUL or lone surrogate in an argument, nested value, kwarg value or name, "
     "dict key, queue, tag or class name: InvalidJob naming it, nothing inserted."),
    ("hostile class, queue and tag names", "input",
     "Hypothesis: names of quotes, backslashes, SQL, `%s`/`$1`, LIKE wildcards, control and "
     "astral characters: stored exactly, matched by the lock query and the NOTIFY trigger "
     "exactly and never by a near miss."),
    ("hostile queue names, real worker", "input",
     "13 nasty queue names worked by a real worker through polling and NOTIFY; a job in a "
     "LIKE-matching near-miss queue is left alone."),
    ("unregistered / dangerous class names, malformed rows", "input",
     "Rows naming `os.system`, `subprocess.Popen`, `builtins.eval`, a module that must not "
     "be imported, random names, with shell commands as args; rows whose kwargs are not an "
     "object, args nested 1,100 deep, a 5,000-digit integer: errored and retried or "
     "expired, never imported or called, the worker unharmed."),
    ("malformed NOTIFY payloads", "input",
     "Hypothesis: text, JSON of every shape, job_available with wrong types, nesting of "
     "thousands of levels, on the worker's own channel; a job enqueued after each batch "
     "must still arrive by NOTIFY (poll interval 60 s)."),
    ("NOTIFY payload parser", "input", "Hypothesis: the same payloads straight to parse()."),
    ("error messages and backtraces of megabytes", "input",
     "Hypothesis: exceptions with messages, notes and causes of up to 3 MB (full: 8 MB) of "
     "any characters (NUL and lone surrogates included), and deep recursion."),
]

ZERO_KEYS = ["lost", "double_run", "double_effect", "leaked_locks", "stale_lockers"]


def environment() -> dict[str, Any]:
    """What the run ran on, kept beside its results (environment.json)."""
    env: dict[str, Any] = {
        "system": platform.system(), "machine": platform.machine(),
        "cores": os.cpu_count(), "python": platform.python_version(),
        "postgresql": "unknown", "commit": "unknown",
    }
    git = subprocess.run(["git", "describe", "--always", "--dirty=+changes", "--abbrev=7"],
                         cwd=ROOT, capture_output=True, text=True, check=False)
    if git.returncode == 0:
        env["commit"] = git.stdout.strip()
    try:
        from que_core import plugins
        from que_core.testing import databases

        adapter = plugins.get_adapter(sorted(plugins.adapters())[0])
        conn = adapter.connect(databases.server_dsn())
        try:
            env["postgresql"] = conn.execute("SHOW server_version")[0][0]
        finally:
            conn.close()
    except Exception as exc:  # the figures still stand without it
        print(f"server version not read: {exc}", file=sys.stderr)
    return env


def run_suite(full: bool, results: Path, junit: Path, extra: list[str]) -> float:
    env = dict(os.environ)
    env["QUE_RELIABILITY_RESULTS"] = str(results)
    if full:
        env["QUE_RELIABILITY"] = "full"
    cmd = [sys.executable, "-m", "pytest", "tests/reliability", "-p", "no:cacheprovider",
           "-q", f"--junitxml={junit}", *extra]
    print("$", " ".join(cmd), file=sys.stderr, flush=True)
    started = time.monotonic()
    subprocess.run(cmd, cwd=ROOT, env=env, check=False)
    return time.monotonic() - started


def load(results: Path, junit: Path
         ) -> tuple[list[dict[str, Any]], dict[str, str], float, datetime]:
    """The case records, each test's outcome, pytest's time and when it started."""
    records = [json.loads(line) for line in results.read_text().splitlines() if line.strip()]
    outcomes: dict[str, str] = {}
    total = 0.0
    started = datetime.now(timezone.utc)
    if junit.exists():
        tree = ET.parse(junit)
        for suite in tree.iter("testsuite"):
            total += float(suite.get("time", 0))
            if suite.get("timestamp"):
                started = datetime.fromisoformat(suite.get("timestamp", ""))
        for case in tree.iter("testcase"):
            module = case.get("classname", "").replace(".", "/") + ".py"
            node = f"{module}::{case.get('name')}"
            state = "passed"
            for child in case:
                if child.tag in ("failure", "error"):
                    state = "failed"
                elif child.tag == "skipped":
                    state = "skipped"
            outcomes[node] = state
    return records, outcomes, total, started


def _case_of(name: str) -> str:
    for prefix, _, _ in CASES:
        if name.startswith(prefix):
            return prefix
    return name


def _sum(recs: list[dict[str, Any]], key: str) -> str:
    values = [r[key] for r in recs if isinstance(r.get(key), (int, float))]
    return f"{sum(values):,}" if values else "—"


def render(records: list[dict[str, Any]], outcomes: dict[str, str], seconds: float,
           command: str, started: datetime, env: dict[str, Any] | None) -> str:
    scale = records[0]["scale"] if records else "?"
    by_case: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        by_case[_case_of(r["case"])].append(r)
    # pytest outcomes per case, from the tests that recorded it
    tests_of: dict[str, set[str]] = defaultdict(set)
    for r in records:
        if r.get("test"):
            tests_of[_case_of(r["case"])].add(r["test"])
    failed_tests = sorted(n for n, s in outcomes.items() if s == "failed")
    lines = [
        "# Reliability: faults and hostile input",
        "",
        "<!-- Generated by tests/reliability/report.py from the suite's own output; "
        "do not edit by hand. -->",
        "",
        "What que-core does when things break, measured by the fault-injection and",
        "hostile-input suite in `tests/reliability/` (part of `python3 dev.py test`).",
        "After every case the suite checks:",
        "",
        "- **exactly once**: a job that writes its effect in the transaction of its own",
        "  `destroy()` commits the effect once (double effect: 0);",
        "- **nothing lost**: every job enqueued is worked, or still waiting with its",
        "  error recorded (lost: 0);",
        "- **never twice at once**: no two runs of a job overlap in time (double-run: 0;",
        "  each run logs its start and end with `clock_timestamp()`, pid and thread",
        "  through the job's own session; a run whose process was killed, whose session",
        "  was terminated or whose server restarted ends at that fault);",
        "- **no leftovers**: no advisory lock in `pg_locks` once the workers stopped",
        "  (leaked locks: 0), and no `que_lockers` row of a dead process once the next",
        "  worker started (stale lockers: 0).",
        "",
        f"## Results ({scale} run)",
        "",
        f"Command: `{command}`  ",
        f"Run started {started.astimezone(timezone.utc):%Y-%m-%d %H:%M} UTC"
        + (f" on {env['system']} {env['machine']}, {env['cores']} cores, Python "
           f"{env['python']}, PostgreSQL {env['postgresql']}, que-core {env['commit']}"
           if env else "")
        + f"; pytest time {seconds / 60:.1f} min.  ",
        f"Tests: {sum(1 for s in outcomes.values() if s == 'passed')} passed, "
        f"{len(failed_tests)} failed, {sum(1 for s in outcomes.values() if s == 'skipped')} "
        "skipped.",
        "",
        "| Fault or input class | Adapters | Faults injected / inputs | Jobs | Job runs "
        "| Lost | Double-run | Double effect | Leaked locks | Stale lockers | Tests |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|---|",
    ]
    order = [c for c, _, _ in CASES] + sorted(set(by_case) - {c for c, _, _ in CASES})
    for case in order:
        recs = by_case.get(case)
        if not recs:
            continue
        adapters = sorted({r["adapter"] for r in recs})
        tests = tests_of.get(case, set())
        passed = sum(1 for t in tests if outcomes.get(t) == "passed")
        verdict = f"{passed}/{len(tests)} passed" if outcomes else "?"
        name = case if case in {c for c, _, _ in CASES} else recs[0]["case"]
        lines.append(
            f"| {name} | {', '.join(adapters)} | {_sum(recs, 'injected')} | {_sum(recs, 'jobs')} "
            f"| {_sum(recs, 'job_runs')} | "
            + " | ".join(_sum(recs, k) for k in ZERO_KEYS)
            + f" | {verdict} |"
        )
    lines += ["", "Counts are sums over the adapters named in the row (one run of the case "
              "per adapter). — : not measured by that case (no jobs of its kind, or no "
              "workers left to check).", ""]
    if failed_tests:
        lines += ["Failed tests:", ""] + [f"- `{t}`" for t in failed_tests] + [""]
    # Scale figures
    scale_recs = [r for r in records if "lock_ms_waiting" in r]
    if scale_recs:
        lines += [
            "### Many waiting jobs and dead tuples",
            "",
            "Lock query: the locker's poll for 8 jobs (`lock_jobs`), median and worst of "
            "15 runs (5 with the old snapshot), milliseconds.",
            "",
            "| Adapter | Waiting jobs | Dead tuples | Insert (s) | Poll, waiting jobs only "
            "| Poll, dead tuples + old snapshot | Poll, dead tuples | Poll while working "
            "| Worked | Jobs/s |",
            "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
        ]
        for r in scale_recs:
            def ms(key: str, r: dict[str, Any] = r) -> str:
                v = r.get(key) or {}
                return f"{v.get('median_ms', '—')} / {v.get('max_ms', '—')}"

            lines.append(
                f"| {r['adapter']} | {r['waiting']:,} | {r.get('dead_tuples', 0):,} "
                f"| {r.get('insert_seconds')} | {ms('lock_ms_waiting')} "
                f"| {ms('lock_ms_dead_old_snapshot')} | {ms('lock_ms_dead')} "
                f"| {ms('lock_ms_while_working')} | {r.get('worked', 0):,} "
                f"| {r.get('jobs_per_second')} |")
        lines += [
            "",
            "The poll walks `que_poll_idx` (checked with EXPLAIN) and stays at a few "
            "milliseconds with a million waiting jobs. Dead tuples ahead of the waiting "
            "jobs cost one heap visit each while a long transaction keeps them visible "
            "(Que's known table-bloat trap: keep transactions short, let autovacuum run); "
            "once no snapshot needs them, the first scans mark them dead and the poll is "
            "back to milliseconds. Workers keep making progress throughout.",
            "",
        ]
    listen = [r for r in records if r["case"].startswith("LISTEN")]
    hang = [r for r in records if r["case"].startswith("job hanging")]
    if listen or hang:
        lines += ["### Other figures", ""]
        for r in listen:
            lines.append(f"- {r['case']}, {r['adapter']}: jobs found by polling every "
                         f"{r['poll_interval']} s, latency median {r['median_latency']} s, "
                         f"worst {r['max_latency']} s.")
        for r in hang:
            lines.append(f"- {r['case']}, {r['adapter']}: `stop(timeout=0.5)` returned after "
                         f"{r['stop_seconds']} s; hung job's session left: "
                         f"{r['hung_session_left']}.")
        lines.append("")
    lines += ["## The cases", ""]
    for case, kind, text in CASES:
        if case in by_case:
            lines.append(f"- **{case}** ({kind}): {text}")
    lines += ["", HOSTILE_NEIGHBOURS.read_text(encoding="utf-8"), FOOTER]
    return "\n".join(lines) + "\n"


#: Issue 16's attacks, before and after (a table too wide for this file).
HOSTILE_NEIGHBOURS = Path(__file__).with_name("hostile_neighbours.md")

FOOTER = """\
## Reproducing

```sh
python3 dev.py test tests/reliability                     # the default run (a few minutes)
QUE_RELIABILITY=full python3 dev.py test tests/reliability  # the full run
python -m tests.reliability.report --full                 # full run, and rewrite this page
python -m tests.reliability.report --results docs/reliability-run/results.jsonl \\
    --junit docs/reliability-run/junit.xml                # re-render from the run above
```

`docs/reliability-run/` keeps that run's raw output: one JSON object per case
and adapter (every figure, the seed of the random fault schedule) and
pytest's JUnit XML. A case's schedule can be replayed with
`QUE_RELIABILITY_SEED=<seed>`.

`QUE_TEST_DSN` points the suite at a server of your own (otherwise the embedded
one); the restart case needs PostgreSQL's `initdb` and `pg_ctl` (a system
install, `pg_config --bindir`, or the pgserver wheel's) and, as root, a
`postgres` user to run them as. The default run makes the same checks as the
full one with fewer jobs, kills, restarts and examples, 100,000 waiting jobs
instead of 1,000,000, and measures that case with one adapter only.

## Faults this suite found, and their fixes

- **kill -9 mid-commit ran a job twice and committed its effect twice.** A
  process killed while its job's commit was in flight freed the lock before
  the commit was visible; another worker ran the job again and its DELETE
  silently matched nothing. `destroy()`, `finish()`, `expire()`, `retry_in()`
  now raise `JobAlreadyResolved` when the row is no longer waiting, which rolls
  back that run's transaction.
- **Terminating the locker's session let other workers start running jobs.**
  The locker now holds shared locks once it has locked a job, and each worker
  thread takes a shared lock of its own on its session before running it, so
  a job stays locked while either session lives; a token lock held by each
  locker session stops a thread from running a job whose locker died before
  the job started.
- **A hung job outlived `Worker.stop(timeout)` with its session open**, free
  to commit after another worker had run it: its session is now terminated at
  the deadline before its lock is released.
- **Jobs whose error handling raised ran again at once, for ever**: an
  exception whose `str()` raises, messages with lone surrogates, `retry_delay`
  returning NaN, infinity, 1e300 or a negative value.
- **A job that left its session in a transaction poisoned the thread**: its
  outcome and every later job's never committed and ran again for ever. The
  session is now checked after each job and replaced, and the run recorded as
  an error.
- **Malformed rows killed the locker or looped**: args nested deeper than
  Python's json decodes, 5,000-digit integers, kwargs that are not an object.
- **A deeply nested NOTIFY payload killed the listener** (and a dead listener
  left its locker marked as listening).
- **Floats of 1e16 and more came back as integers** (jsonb keeps digits, not
  notation) — 1.7976931348623157e308 as an integer of another value.
- **Lone surrogates, and NUL or surrogates in keyword argument names,** got
  past validation to the driver (with pg8000 the encoding error left the
  caller's connection out of step).
- **The locker's token lock outlived `Worker.stop()` by a moment** (released
  by the session's close): it is now unlocked explicitly.
- **`Worker.stop(timeout=0.5)` returned after 0.98 s** with psycopg and
  psycopg2: it waited for the listener's blocking wait (0.5 s slices) to
  end. The slices are now 0.1 s (a wait on the socket, no round trip).

## Known limits

- A job that returns without resolving itself is deleted by its worker
  thread's next claim statement (`que_core_next_jobs`, with the other
  outcomes since, in one commit). If that thread's session or process is lost
  before then, the job runs again: at least once, by design. The exactly-once
  invariant above is about jobs that write their effect in the transaction
  of their own `destroy()`.
- A worker thread claims, runs and resolves its jobs on one session, which
  holds their advisory locks: losing that session loses the locks and the
  uncommitted work together. A batch claimed on a session that is being
  terminated may start a job whose lock is already gone; the checker counts
  such a run as ended at its start (it can commit nothing: its session is
  gone).
- A server restart ends every session, so a job running across it loses its
  locks; it cannot commit anything afterwards (its session is gone), but its
  Python code may still be running when another worker starts the job. The
  checker counts a run as ended when its session ended.
- A job that resolves itself and then leaves a *read-only* transaction open is
  noticed only after the next job on that thread has written something: that
  next run is rolled back and recorded as an error, then retried. Settings a
  job changes on its session (`search_path`, timeouts, ...) stay for the next
  job on that thread until a write fails and the session is replaced.
- Dead tuples ahead of the waiting jobs, kept visible by a long transaction,
  slow every poll (figures above): PostgreSQL must visit each one. Keep
  transactions short and let autovacuum run; que-core does not work around it.
- JSON has no negative zero in jsonb: `-0.0` comes back as `0.0`.
- The adapters pass a driver's `UnicodeEncodeError` through untranslated;
  validation now stops such text before it reaches them.
"""


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="QUE_RELIABILITY=full")
    parser.add_argument("--results", type=Path, help="render these results, run nothing")
    parser.add_argument("--junit", type=Path, help="with --results: pytest's JUnit XML")
    parser.add_argument("--output", type=Path, default=DOC)
    parser.add_argument("pytest_args", nargs="*")
    args = parser.parse_args(argv)
    if args.results:
        results, junit = args.results, args.junit or Path("/nonexistent")
        seconds = 0.0
    else:
        tmp = Path(tempfile.mkdtemp(prefix="que_reliability_"))
        results, junit = tmp / "results.jsonl", tmp / "junit.xml"
        results.touch()
        # Before the run: the commit tested is the one checked out when it started.
        (tmp / "environment.json").write_text(json.dumps(environment()) + "\n",
                                              encoding="utf-8")
        seconds = run_suite(args.full, results, junit, args.pytest_args)
        print(f"results: {results}\njunit: {junit}", file=sys.stderr)
    records, outcomes, total, started = load(results, junit)
    env_file = results.parent / "environment.json"
    env = json.loads(env_file.read_text()) if env_file.exists() else None
    scale = records[0]["scale"] if records else "default"
    command = "python -m tests.reliability.report" + (" --full" if scale == "full" else "")
    text = render(records, outcomes, total or seconds, command, started, env)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text, encoding="utf-8")
    print(f"wrote {args.output}", file=sys.stderr)
    return 0 if not any(s == "failed" for s in outcomes.values()) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
