"""que web's response times with a big job table.

    python benchmarks/web.py                      # 1,000,000 jobs, 30 requests per page
    python benchmarks/web.py --jobs 200000 --requests 10

Fills a throwaway database with --jobs jobs in four queues (by default 60 %
finished and kept, 30 % waiting, 6 % scheduled, 3 % retrying, 1 % expired:
see --mix), VACUUM ANALYZEs it, serves the dashboard with uvicorn on a free
local port in this process and asks each page --requests times over HTTP
(httpx, one keep-alive connection, after 3 warm-up requests). Prints each
page's median and 90th percentile in ms; the aim is a median under 100 ms.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import _common as common
from benchmarks._common import median, table
from conformance.fixtures import free_port
from que_core import plugins

QUEUES = ("default", "mail", "reports", "webhooks")
CLASSES = ("SendEmail", "BuildReport", "PostWebhook", "ResizeImage", "SyncAccount")

FILL = """
INSERT INTO que_jobs (queue, priority, run_at, job_class, args, data, job_schema_version,
                      error_count, last_error_message, finished_at, expired_at)
SELECT (%s::text[])[1 + i %% 4], 100,
       CASE WHEN s.state = 'scheduled' THEN now() + (i %% 3600) * interval '1 s'
            ELSE now() - (i %% 86400) * interval '1 s' END,
       (%s::text[])[1 + (i / 4) %% 5],
       jsonb_build_array(i, 'user' || (i %% 1000)),
       CASE WHEN i %% 10 = 0 THEN '{"tags": ["vip"]}'::jsonb ELSE '{}'::jsonb END,
       2,
       CASE WHEN s.state IN ('retrying', 'expired') THEN 1 + i %% 5 ELSE 0 END,
       CASE WHEN s.state IN ('retrying', 'expired')
            THEN 'TimeoutError: upstream ' || (i %% 50) || ' did not answer' END,
       CASE WHEN s.state = 'finished' THEN now() - (i %% 86400) * interval '1 s' END,
       CASE WHEN s.state = 'expired' THEN now() END
FROM generate_series(1, %s) AS i
CROSS JOIN LATERAL (
  SELECT CASE WHEN ((i / 4)::bigint * 7919) %% 100 < %s THEN 'finished'
              WHEN ((i / 4)::bigint * 7919) %% 100 < %s THEN 'ready'
              WHEN ((i / 4)::bigint * 7919) %% 100 < %s THEN 'scheduled'
              WHEN ((i / 4)::bigint * 7919) %% 100 < %s THEN 'retrying'
              ELSE 'expired' END AS state
) AS s
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dsn", help="server (default $QUE_TEST_DSN / $DATABASE_URL)")
    parser.add_argument("--adapter", default="psycopg")
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--mix", default="60,30,6,3,1",
                        help="percent finished,waiting,scheduled,retrying,expired")
    args = parser.parse_args()
    common.exit_cleanly_on_sigterm()
    import httpx
    import uvicorn

    from que_core.web import create_app

    mix = [int(p) for p in args.mix.split(",")]
    if len(mix) != 5 or sum(mix) != 100:
        parser.error(f"--mix {args.mix!r}: five percentages that add up to 100")
    bounds = [sum(mix[: i + 1]) for i in range(4)]
    print(common.describe())
    adapter = plugins.get_adapter(args.adapter)
    with common.bench_database(adapter, common.server_dsn(args.dsn)) as dsn:
        conn = adapter.connect(dsn)
        try:
            started = time.perf_counter()
            conn.execute("SELECT set_config('que.skip_notify', 'true', false)")
            conn.execute(FILL, (list(QUEUES), list(CLASSES), args.jobs, *bounds))
            conn.execute("VACUUM ANALYZE que_jobs")
            print(f"filled {args.jobs:,} jobs (mix {args.mix}) in "
                  f"{time.perf_counter() - started:.1f} s")
            ((deep,),) = conn.execute("SELECT id FROM que_jobs ORDER BY id OFFSET %s LIMIT 1",
                                      (args.jobs // 2,))
        finally:
            conn.close()
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(create_app(dsn, adapter=adapter),
                                               host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.05)
        pages = [
            ("overview", "/"),
            ("overview (live part)", "/live/overview"),
            ("jobs: queue=mail", "/jobs?queue=mail"),
            ("jobs: queue=mail, state=errored", "/jobs?queue=mail&state=errored"),
            ("jobs: class=SendEmail, tag=vip", "/jobs?class=SendEmail&tag=vip"),
            ("jobs: error contains 'upstream 7 '", "/jobs?error=upstream+7+"),
            ("jobs: queue=reports, page at mid-table", f"/jobs?queue=reports&below={deep}"),
            ("job page", f"/jobs/{deep}"),
            ("running", "/running"),
        ]
        rows = []
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
                for name, path in pages:
                    times = []
                    for i in range(args.requests + 3):
                        t0 = time.perf_counter()
                        response = client.get(path)
                        elapsed = (time.perf_counter() - t0) * 1000
                        response.raise_for_status()
                        if i >= 3:
                            times.append(elapsed)
                    times.sort()
                    p90 = times[max(0, int(len(times) * 0.9 + 0.5) - 1)]
                    rows.append([name, f"{median(times):.1f}", f"{p90:.1f}",
                                 "yes" if median(times) < 100 else "NO"])
        finally:
            server.should_exit = True
            thread.join(10)
    print(table(["page", "median ms", "p90 ms", "< 100 ms"], rows))
    print(common.describe())
    return 0


if __name__ == "__main__":
    sys.exit(main())
