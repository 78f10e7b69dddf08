-- Every statement que-core runs at work time, by name (see que_core/sql.py).
-- Placeholders are %s, in order. JSON travels as text and is cast here.

-- name: insert_job
INSERT INTO que_jobs (queue, priority, run_at, job_class, args, kwargs, data, job_schema_version)
VALUES (%s, %s, coalesce(%s::timestamptz, now()), %s, %s::jsonb, %s::jsonb, %s::jsonb, 2)
RETURNING id, run_at

-- name: reserve_job_ids
-- Bulk enqueue by COPY, which returns nothing: the ids its rows take, in
-- order, and the run_at of those that name none (the transaction's now(),
-- as the column's default would give them).
SELECT now(), array_agg(nextval(s.seq) ORDER BY i)
FROM (SELECT pg_get_serial_sequence('que_jobs', 'id')::regclass AS seq) AS s,
     generate_series(1, %s::integer) AS i
GROUP BY s.seq

-- name: copy_jobs
COPY que_jobs (id, queue, priority, run_at, job_class, args, kwargs, data, job_schema_version)
FROM STDIN

-- name: get_skip_notify
SELECT coalesce(current_setting('que.skip_notify', true), '')

-- name: set_skip_notify
SELECT set_config('que.skip_notify', %s, true)

-- name: next_jobs
-- A worker session's one statement per batch: write the outcomes of the
-- jobs it ran, release the locks of outcomes committed by its last call,
-- and lock and return the next jobs (see migrations/7.2/up.sql, 7.3). Params:
-- deleted ids, other outcomes (JSON), ids to unlock, queues (NULL: any),
-- max priority, limit, ids to skip, and per queue where to start
-- (priority, run_at and id arrays; NULL: from the start), then the job
-- classes to take only and those to leave (revision 7.3; NULL: no filter).
SELECT * FROM que_core_next_jobs(%s::bigint[], %s::jsonb, %s::bigint[], %s::text[],
                                 %s::integer, %s::integer, %s::bigint[],
                                 %s::integer[], %s::timestamptz[], %s::bigint[],
                                 %s::text[], %s::text[])

-- ---------------------------------------------------------------------------
-- Job control (migrations/7.4): the watchdog (que_core/watchdog.py), cancel,
-- pause and retention (que_core/control.py, que_core/retention.py).

-- name: cancel_requests
-- The cancel requests among the jobs a worker holds (ids): id, when (ISO
-- 8601, UTC) and why.
SELECT job_id, to_char(requested_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'), reason
FROM que_core_cancels WHERE job_id = ANY(%s::bigint[])

-- name: paused_queues
-- Which of the queues given are paused.
SELECT queue FROM que_core_paused_queues WHERE queue = ANY(%s::text[])

-- name: cancel_statement
-- Cancel what the session of a job being stopped is running, if it is
-- running a statement now (a session waiting for its client has nothing to
-- cancel, and the next statement it gets must not be hit). state is NULL for
-- another role's session without pg_read_all_stats: cancelled then too.
SELECT count(pg_cancel_backend(a.pid)) FROM pg_stat_activity AS a
WHERE a.pid = %s AND coalesce(a.state, 'active') = 'active'

-- name: lock_job_waiting
-- Take a job's lock, waiting for it (a stuck thread's job, taken over once
-- its session is ended).
SELECT pg_advisory_lock(%s::bigint)

-- name: waits_for_lock
-- Whether session pid waits for an advisory lock.
SELECT count(*) FROM pg_locks WHERE pid = %s AND locktype = 'advisory' AND NOT granted

-- name: cancel_jobs
-- Params: ids, reason. One row per distinct id: (id, result); see
-- que_core_cancel in migrations/7.3/up.sql.
SELECT id, result FROM que_core_cancel(%s::bigint[], %s::text)

-- name: pause_queue
-- Returns a row when the queue was not paused before.
INSERT INTO que_core_paused_queues (queue, reason) VALUES (%s, %s)
ON CONFLICT (queue) DO NOTHING
RETURNING queue

-- name: resume_queue
-- Returns a row when the queue was paused; tells every que-core worker at
-- once (they poll it each second too).
WITH d AS (DELETE FROM que_core_paused_queues WHERE queue = %s RETURNING queue)
SELECT d.queue, pg_notify('que_core_control',
                          json_build_object('message_type', 'resume', 'queue', d.queue)::text)
FROM d

-- name: paused_since
SELECT {{iso_utc(paused_at)}}, reason FROM que_core_paused_queues WHERE queue = %s

-- name: retention_lock
-- One worker at a time prunes: a session lock with two int4 keys ("que\0"
-- and 3), which never collides with a job's one-bigint lock (nor with the
-- migrators', whose second key is 1).
SELECT pg_try_advisory_lock(1903518976, 3)

-- name: retention_unlock
SELECT pg_advisory_unlock(1903518976, 3)

-- name: prune_finished
-- One batch of retention: finished jobs older than %s seconds, at most %s,
-- oldest first (que_core_jobs_finished_at_idx), skipping rows someone has
-- locked. Returns how many went.
WITH doomed AS (
  SELECT id FROM que_jobs
  WHERE finished_at < now() - %s * interval '1 second'
  ORDER BY finished_at
  LIMIT %s
  FOR UPDATE SKIP LOCKED
), gone AS (
  DELETE FROM que_jobs WHERE id IN (SELECT id FROM doomed) RETURNING id
)
SELECT count(*) FROM gone

-- name: prune_expired
-- The same for expired jobs (cancelled ones included), by expired_at.
WITH doomed AS (
  SELECT id FROM que_jobs
  WHERE expired_at < now() - %s * interval '1 second'
  ORDER BY expired_at
  LIMIT %s
  FOR UPDATE SKIP LOCKED
), gone AS (
  DELETE FROM que_jobs WHERE id IN (SELECT id FROM doomed) RETURNING id
)
SELECT count(*) FROM gone

-- name: prune_cancel_requests
-- Cancel requests whose jobs are no longer waiting (a Ruby Que worker
-- finished it, someone deleted it).
DELETE FROM que_core_cancels AS c
WHERE NOT EXISTS (SELECT FROM que_jobs AS j
                  WHERE j.id = c.job_id AND j.finished_at IS NULL AND j.expired_at IS NULL)

-- name: relock_jobs
-- After a session was replaced: lock again the jobs whose outcomes it still
-- owes (those another session took meanwhile are theirs now).
SELECT v FROM unnest(%s::bigint[]) AS v WHERE pg_try_advisory_lock(v)

-- The four resolutions return the job's id only when the row was still
-- waiting: a run that finds nothing to resolve is not the run that counts
-- (Job._resolve raises, so that its transaction rolls back).

-- name: destroy_job
DELETE FROM que_jobs WHERE id = %s RETURNING id

-- name: finish_job
UPDATE que_jobs SET finished_at = now()
WHERE id = %s AND finished_at IS NULL AND expired_at IS NULL
RETURNING id

-- name: expire_job
UPDATE que_jobs SET expired_at = now()
WHERE id = %s AND finished_at IS NULL AND expired_at IS NULL
RETURNING id

-- name: retry_job
-- Reschedule without counting an error (the job asked for it).
UPDATE que_jobs SET run_at = now() + %s * interval '1 second'
WHERE id = %s AND finished_at IS NULL AND expired_at IS NULL
RETURNING id

-- name: waiting_jobs
-- Every job a worker could take some time (que_core.testing), in its order.
SELECT id, priority, run_at, job_class, queue, error_count, args::text, kwargs::text, data::text
FROM que_jobs
WHERE finished_at IS NULL AND expired_at IS NULL
ORDER BY priority, run_at, id

-- name: other_format_jobs
-- Waiting jobs in a row format this worker does not work (Que 1.x wrote 1).
SELECT job_schema_version, count(*)
FROM que_jobs
WHERE job_schema_version <> 2 AND finished_at IS NULL AND expired_at IS NULL
GROUP BY job_schema_version

-- name: backend_pid
SELECT pg_backend_pid()

-- fragment: live_sessions
-- Backend pids of the client sessions on this database. A que_lockers row
-- naming any other pid is dead (a killed process leaves its row) or fake
-- (another program wrote it); revision 7.1's que_job_notify ignores it too.
-- backend_type is NULL for other roles' sessions without pg_read_all_stats.
SELECT a.pid FROM pg_stat_activity AS a
WHERE a.datname = current_database()
  AND coalesce(a.backend_type, 'client backend') = 'client backend'

-- name: clean_lockers
-- Rows of lockers whose sessions are gone, or never were lockers of ours.
DELETE FROM que_lockers
WHERE pid = %s OR pid NOT IN ({{live_sessions}})

-- name: register_locker
INSERT INTO que_lockers (pid, worker_count, worker_priorities, ruby_pid, ruby_hostname,
                         queues, listening, job_schema_version)
VALUES (%s, %s,
        ARRAY(SELECT (jsonb_array_elements_text(%s::jsonb))::integer),
        %s, %s,
        ARRAY(SELECT jsonb_array_elements_text(%s::jsonb)),
        %s, 2)

-- name: terminate_backends
-- The sessions of jobs still running when a worker's shutdown deadline
-- passed: ended before the locker lets their jobs go.
SELECT count(pg_terminate_backend(p)) FROM unnest(%s::integer[]) AS p

-- name: backends_alive
SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s::integer[])

-- name: unregister_locker
DELETE FROM que_lockers WHERE pid = %s

-- name: set_locker_listening
UPDATE que_lockers SET listening = %s WHERE pid = %s

-- ---------------------------------------------------------------------------
-- Inspection and management (que_core/admin.py: `que stats`, `que jobs`,
-- `que clear`) and metrics (que_core/contrib/prometheus.py).
--
-- A job's state is Que's que_determine_job_state (expired, finished,
-- errored, scheduled, ready), except that an unfinished job whose advisory
-- lock some session holds right now is "running", and an expired one that
-- was cancelled (data has "cancelled", see migrations/7.3) is "cancelled". pg_locks shows a bigint
-- advisory key with its high half in classid, its low half in objid and
-- objsubid = 1 (two-int4-key locks, such as the migrators', have 2).
-- Filters travel as one JSON object (admin.JobFilter.to_json); a key that is
-- absent does not filter:
--   ids [bigint], queues [text], classes [text], states [text], tag text,
--   args jsonb (containment), kwargs jsonb (containment).
-- A class filter matches the stored job_class and, for Ruby ActiveJob
-- wrappers, the wrapped class, which is also what is shown.

-- fragment: admin_jobs
-- Two CTEs: locked (job ids some other session holds) and j (every job with
-- its shown_class and state). Used as `{{admin_jobs}}` after WITH.
locked AS (
  SELECT DISTINCT (l.classid::bigint << 32) | l.objid::bigint AS id
  FROM pg_locks AS l
  WHERE l.locktype = 'advisory' AND l.objsubid = 1 AND l.granted
    AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
    AND l.pid <> pg_backend_pid()
),
j AS (
  SELECT q.*,
         CASE q.job_class
           WHEN 'ActiveJob::QueueAdapters::QueAdapter::JobWrapper'
             THEN coalesce(q.args -> 0 ->> 'job_class', q.job_class)
           ELSE q.job_class
         END AS shown_class,
         CASE
           WHEN s.state = 'expired' AND q.data -> 'cancelled' IS NOT NULL THEN 'cancelled'
           WHEN s.state IN ('expired', 'finished') THEN s.state
           WHEN k.id IS NOT NULL THEN 'running'
           ELSE s.state
         END AS state
  FROM que_jobs AS q
  CROSS JOIN LATERAL (SELECT que_determine_job_state(q) AS state) AS s
  LEFT JOIN locked AS k ON k.id = q.id
)

-- fragment: admin_match
-- The filter conditions over j and params (p, the filter JSON).
WHERE (p -> 'ids' IS NULL OR j.id IN (SELECT jsonb_array_elements_text(p -> 'ids')::bigint))
  AND (p -> 'queues' IS NULL OR j.queue IN (SELECT jsonb_array_elements_text(p -> 'queues')))
  AND (p -> 'classes' IS NULL
       OR j.job_class IN (SELECT jsonb_array_elements_text(p -> 'classes'))
       OR j.shown_class IN (SELECT jsonb_array_elements_text(p -> 'classes')))
  AND (p -> 'states' IS NULL OR j.state IN (SELECT jsonb_array_elements_text(p -> 'states')))
  AND (p ->> 'tag' IS NULL OR j.data @> jsonb_build_object('tags', jsonb_build_array(p ->> 'tag')))
  AND (p -> 'args' IS NULL OR j.args @> (p -> 'args'))
  AND (p -> 'kwargs' IS NULL OR j.kwargs @> (p -> 'kwargs'))

-- fragment: iso_utc(ts)
-- A timestamp as ISO 8601 text in UTC (...Z), whatever the session's
-- settings; 'infinity', '-infinity' and BC dates (another program may have
-- written them) as themselves.
CASE WHEN NOT isfinite(ts) THEN ts::text
     WHEN ts < '0001-01-01 00:00:00+00' THEN to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z" BC')
     ELSE to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') END

-- name: admin_stats
WITH {{admin_jobs}}
SELECT queue, shown_class,
       count(*) FILTER (WHERE state = 'ready'),
       count(*) FILTER (WHERE state = 'scheduled'),
       count(*) FILTER (WHERE state = 'running'),
       count(*) FILTER (WHERE state = 'errored'),
       count(*) FILTER (WHERE state = 'expired'),
       count(*) FILTER (WHERE state = 'cancelled'),
       count(*) FILTER (WHERE state = 'finished'),
       -- greatest(): another program may have written -infinity, which
       -- now() cannot be subtracted from.
       extract(epoch FROM now() - min(greatest(run_at, '0001-01-02 00:00:00+00'))
                                  FILTER (WHERE state = 'ready'))::float8
FROM j
GROUP BY queue, shown_class
ORDER BY queue, shown_class

-- name: admin_queues
-- Every queue with jobs or paused: name, paused since (NULL: not paused),
-- why, and its jobs by state.
WITH {{admin_jobs}},
counts AS (
  SELECT queue,
         count(*) FILTER (WHERE state = 'ready') AS ready,
         count(*) FILTER (WHERE state = 'scheduled') AS scheduled,
         count(*) FILTER (WHERE state = 'running') AS running,
         count(*) FILTER (WHERE state = 'errored') AS errored,
         count(*) FILTER (WHERE state = 'expired') AS expired,
         count(*) FILTER (WHERE state = 'cancelled') AS cancelled,
         count(*) FILTER (WHERE state = 'finished') AS finished
  FROM j GROUP BY queue
)
SELECT coalesce(c.queue, p.queue), {{iso_utc(p.paused_at)}}, p.reason,
       coalesce(c.ready, 0), coalesce(c.scheduled, 0), coalesce(c.running, 0),
       coalesce(c.errored, 0), coalesce(c.expired, 0), coalesce(c.cancelled, 0),
       coalesce(c.finished, 0)
FROM counts AS c FULL JOIN que_core_paused_queues AS p ON p.queue = c.queue
ORDER BY 1

-- name: cancel_ends
-- How the cancelled jobs (ids) a worker held stand: cancelled, running (its
-- request still waits for the worker), or ended otherwise (gone, finished,
-- expired, or waiting with no request left).
SELECT v, CASE WHEN j.data -> 'cancelled' IS NOT NULL THEN 'cancelled'
               WHEN j.id IS NOT NULL AND j.finished_at IS NULL AND j.expired_at IS NULL
                    AND EXISTS (SELECT FROM que_core_cancels AS c WHERE c.job_id = v)
                 THEN 'running'
               ELSE 'ended' END
FROM unnest(%s::bigint[]) AS v LEFT JOIN que_jobs AS j ON j.id = v

-- name: admin_lockers
-- The worker processes registered now (rows of dead or fake sessions left out).
SELECT pid, worker_count, ruby_pid, ruby_hostname, listening,
       array_to_json(queues)::text, array_to_json(worker_priorities)::text
FROM que_lockers
WHERE pid IN ({{live_sessions}})
ORDER BY ruby_hostname, ruby_pid

-- name: admin_list_jobs
-- Params: filter JSON, row limit.
WITH params AS (SELECT %s::jsonb AS p), {{admin_jobs}}
SELECT j.id, j.queue, j.shown_class, j.state, j.priority,
       {{iso_utc(j.run_at)}},
       j.error_count, j.last_error_message,
       {{iso_utc(j.finished_at)}},
       {{iso_utc(j.expired_at)}},
       j.args::text, j.kwargs::text, j.data::text, j.job_class, j.job_schema_version
FROM j, params
{{admin_match}}
ORDER BY j.id
LIMIT %s

-- name: admin_get_job
SELECT id, queue, job_class, priority,
       {{iso_utc(run_at)}},
       error_count, last_error_message, last_error_backtrace,
       {{iso_utc(finished_at)}},
       {{iso_utc(expired_at)}},
       args::text, kwargs::text, data::text, job_schema_version
FROM que_jobs WHERE id = %s

-- name: admin_count_jobs
-- Params: filter JSON. Returns how many jobs match and how many of those run now.
WITH params AS (SELECT %s::jsonb AS p), {{admin_jobs}}
SELECT count(*), count(*) FILTER (WHERE j.state = 'running')
FROM j, params
{{admin_match}}

-- fragment: admin_claim
-- The matching jobs (CTE c), each first locked for this transaction
-- (pg_try_advisory_xact_lock): a job a worker holds is running and is
-- skipped (free = false), and no worker can take a job while it changes.
WITH params AS (SELECT %s::jsonb AS p), {{admin_jobs}},
c AS MATERIALIZED (
  SELECT j.id, pg_try_advisory_xact_lock(j.id) AS free
  FROM j, params
  {{admin_match}}
),

-- fragment: admin_claim_result
-- Returns matched, changed, skipped-because-running.
SELECT (SELECT count(*) FROM c), (SELECT count(*) FROM changed),
       (SELECT count(*) FROM c WHERE NOT free)

-- name: admin_retry_jobs
-- Run the matching jobs now: run_at = now(), and an expired job is no longer
-- expired (its error_count stays), a cancelled one no longer cancelled.
-- Finished jobs are left alone.
{{admin_claim}}
changed AS (
  UPDATE que_jobs SET run_at = now(), expired_at = NULL, data = data - 'cancelled'
  WHERE id IN (SELECT id FROM c WHERE free) AND finished_at IS NULL
  RETURNING id
)
{{admin_claim_result}}

-- name: admin_expire_jobs
-- Expire the matching jobs that are neither finished nor expired: they will
-- not run again.
{{admin_claim}}
changed AS (
  UPDATE que_jobs SET expired_at = now()
  WHERE id IN (SELECT id FROM c WHERE free) AND finished_at IS NULL AND expired_at IS NULL
  RETURNING id
)
{{admin_claim_result}}

-- name: admin_delete_jobs
-- Delete the matching jobs, whatever their state, except running ones.
{{admin_claim}}
changed AS (
  DELETE FROM que_jobs WHERE id IN (SELECT id FROM c WHERE free)
  RETURNING id
)
{{admin_claim_result}}

-- name: metrics_queue_depth
-- Params: the queues this process works (the only ones labelled).
-- Per queue: jobs that could run now (run_at passed, neither finished nor
-- expired, errored retries included) that no session holds, and the age in
-- seconds of the oldest of them (floored at year 1, as in admin_stats).
-- Reads only que_poll_idx's rows.
SELECT q.queue, count(*),
       extract(epoch FROM now() - min(greatest(q.run_at, '0001-01-02 00:00:00+00')))::float8
FROM que_jobs AS q
WHERE q.finished_at IS NULL AND q.expired_at IS NULL AND q.run_at <= now()
  AND q.queue = ANY(%s::text[])
  AND NOT EXISTS (
    SELECT 1 FROM pg_locks AS l
    WHERE l.locktype = 'advisory' AND l.objsubid = 1 AND l.granted
      AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND (l.classid::bigint << 32) | l.objid::bigint = q.id
  )
GROUP BY q.queue
ORDER BY q.queue
