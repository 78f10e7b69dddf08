-- que-core revision 7.5: what the dashboard (que web) reads without walking
-- every job. Que ignores all of it.
--
-- que_core_throughput: per minute and queue, how many jobs workers ran and
-- how long they had waited past their run_at. Each worker process adds its
-- tallies every few seconds (que_core/throughput.py) and drops rows older
-- than a day.
CREATE TABLE que_core_throughput (
  minute timestamptz NOT NULL,
  queue text NOT NULL,
  -- runs that succeeded / that raised (retried or expired)
  done bigint NOT NULL DEFAULT 0,
  failed bigint NOT NULL DEFAULT 0,
  -- seconds from run_at to the start of the run, summed and at most
  latency_sum double precision NOT NULL DEFAULT 0,
  latency_max double precision NOT NULL DEFAULT 0,
  PRIMARY KEY (minute, queue)
);

-- The two kinds of rows the overview counts that que_poll_idx does not set
-- apart. Both hold only the few rows in that state: a worker's enqueue and
-- its usual outcome (delete or finish) never touch them.
CREATE INDEX que_core_expired_idx ON que_jobs (queue) WHERE expired_at IS NOT NULL;
CREATE INDEX que_core_retrying_idx ON que_jobs (queue, run_at)
  WHERE error_count > 0 AND finished_at IS NULL AND expired_at IS NULL;
