-- Every statement que-core runs at work time, by name (see que_core/sql.py).
-- Placeholders are %s, in order. JSON travels as text and is cast here.

-- name: insert_job
INSERT INTO que_jobs (queue, priority, run_at, job_class, args, kwargs, data, job_schema_version)
VALUES (%s, %s, coalesce(%s::timestamptz, now()), %s, %s::jsonb, %s::jsonb, %s::jsonb, 2)
RETURNING id, run_at

-- name: insert_jobs
-- Bulk enqueue: one statement for many jobs, rows given as a JSON array.
INSERT INTO que_jobs (queue, priority, run_at, job_class, args, kwargs, data, job_schema_version)
SELECT j.queue, j.priority, coalesce(j.run_at, now()), j.job_class, j.args, j.kwargs, j.data, 2
FROM ROWS FROM (
  jsonb_to_recordset(%s::jsonb) AS (queue text, priority smallint, run_at timestamptz,
                                    job_class text, args jsonb, kwargs jsonb, data jsonb)
) WITH ORDINALITY AS j(queue, priority, run_at, job_class, args, kwargs, data, ordinality)
ORDER BY j.ordinality
RETURNING id, run_at

-- name: get_skip_notify
SELECT coalesce(current_setting('que.skip_notify', true), '')

-- name: set_skip_notify
SELECT set_config('que.skip_notify', %s, true)

-- name: lock_jobs
-- Walk the ready jobs of one queue in que_poll_idx order and try-lock each
-- until LIMIT of them are ours. The ordinary filters sit in the inner query
-- (OFFSET 0 keeps the planner from merging it into the outer one), so the
-- lock call sees only rows that are returned: a lock taken on a row that a
-- later filter drops would leak. Ids this session already holds are
-- excluded: advisory locks are re-entrant and would be counted twice.
SELECT c.id
FROM (
  SELECT id
  FROM que_jobs
  WHERE job_schema_version = 2
    AND queue = %s
    AND priority <= %s
    AND run_at <= now()
    AND finished_at IS NULL
    AND expired_at IS NULL
    AND NOT (id = ANY(%s::bigint[]))
  ORDER BY priority, run_at, id
  OFFSET 0
) AS c
WHERE pg_try_advisory_lock(c.id)
LIMIT %s

-- name: fetch_locked_jobs
-- Advisory locks ignore MVCC: the poll's snapshot may show a job that
-- another worker resolved and unlocked just before we locked it. This fresh
-- statement sees only jobs that are really still waiting.
SELECT id, priority, run_at, job_class, queue, error_count,
       args::text, kwargs::text, data::text
FROM que_jobs
WHERE id = ANY(%s::bigint[])
  AND finished_at IS NULL
  AND expired_at IS NULL

-- name: unlock_jobs
SELECT pg_advisory_unlock(v) FROM unnest(%s::bigint[]) AS v

-- name: try_lock_job
SELECT pg_try_advisory_lock(%s::bigint)

-- name: destroy_job
DELETE FROM que_jobs WHERE id = %s

-- name: finish_job
UPDATE que_jobs SET finished_at = now() WHERE id = %s

-- name: expire_job
UPDATE que_jobs SET expired_at = now() WHERE id = %s

-- name: retry_job
-- Reschedule without counting an error (the job asked for it).
UPDATE que_jobs SET run_at = now() + %s * interval '1 second' WHERE id = %s

-- name: error_job
-- Record an error and schedule the retry. Limits are those of the table's
-- check constraints (characters, not bytes).
UPDATE que_jobs
SET error_count = error_count + 1,
    run_at = now() + %s * interval '1 second',
    last_error_message = left(%s, 500),
    last_error_backtrace = left(%s, 10000)
WHERE id = %s

-- name: error_expire_job
UPDATE que_jobs
SET error_count = error_count + 1,
    expired_at = now(),
    last_error_message = left(%s, 500),
    last_error_backtrace = left(%s, 10000)
WHERE id = %s

-- name: job_state
SELECT error_count, finished_at IS NOT NULL OR expired_at IS NOT NULL
FROM que_jobs WHERE id = %s

-- name: other_format_jobs
-- Waiting jobs in a row format this worker does not work (Que 1.x wrote 1).
SELECT job_schema_version, count(*)
FROM que_jobs
WHERE job_schema_version <> 2 AND finished_at IS NULL AND expired_at IS NULL
GROUP BY job_schema_version

-- name: backend_pid
SELECT pg_backend_pid()

-- name: clean_lockers
-- Rows of lockers whose sessions are gone (a killed process leaves its row).
DELETE FROM que_lockers
WHERE pid = %s OR pid NOT IN (SELECT pid FROM pg_stat_activity)

-- name: register_locker
INSERT INTO que_lockers (pid, worker_count, worker_priorities, ruby_pid, ruby_hostname,
                         queues, listening, job_schema_version)
VALUES (%s, %s,
        ARRAY(SELECT (jsonb_array_elements_text(%s::jsonb))::integer),
        %s, %s,
        ARRAY(SELECT jsonb_array_elements_text(%s::jsonb)),
        %s, 2)

-- name: unregister_locker
DELETE FROM que_lockers WHERE pid = %s

-- name: schema_version
SELECT description FROM pg_description
WHERE objoid = to_regclass('que_jobs') AND classoid = 'pg_class'::regclass AND objsubid = 0

-- name: set_locker_listening
UPDATE que_lockers SET listening = %s WHERE pid = %s
