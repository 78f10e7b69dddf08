-- Every statement que-core runs at work time, by name (see que_core/sql.py).
-- Placeholders are %s, in order. JSON travels as text and is cast here.

-- name: insert_job
INSERT INTO que_jobs (queue, priority, run_at, job_class, args, kwargs, data, job_schema_version)
VALUES (%s, %s, coalesce(%s::timestamptz, now()), %s, %s::jsonb, %s::jsonb, %s::jsonb, 2)
RETURNING id, run_at

-- fragment: unique_target
-- The conflict target of a unique enqueue: que_core_unique_key_idx (7.3).
(job_class, que_core_unique_key)
WHERE que_core_unique_key IS NOT NULL AND finished_at IS NULL AND expired_at IS NULL

-- name: insert_unique_job
-- A job with a unique key: inserted unless one of its class and key is
-- waiting or running (then nothing, and get_unique_job reads that one).
INSERT INTO que_jobs (queue, priority, run_at, job_class, args, kwargs, data, job_schema_version,
                      que_core_unique_key)
VALUES (%s, %s, coalesce(%s::timestamptz, now()), %s, %s::jsonb, %s::jsonb, %s::jsonb, 2, %s)
ON CONFLICT {{unique_target}} DO NOTHING
RETURNING id, run_at, false

-- name: replace_unique_job
-- The same, but the waiting duplicate takes this enqueue's arguments,
-- priority and run_at. A duplicate some session holds (running) is left
-- alone: the transaction-level lock keeps workers off it until the caller
-- commits, and fails while a worker has it. The last column: replaced (a row
-- that was updated has an xmax, a new one none).
INSERT INTO que_jobs (queue, priority, run_at, job_class, args, kwargs, data, job_schema_version,
                      que_core_unique_key)
VALUES (%s, %s, coalesce(%s::timestamptz, now()), %s, %s::jsonb, %s::jsonb, %s::jsonb, 2, %s)
ON CONFLICT {{unique_target}}
DO UPDATE SET args = excluded.args, kwargs = excluded.kwargs, priority = excluded.priority,
              run_at = excluded.run_at
WHERE pg_try_advisory_xact_lock(que_jobs.id)
RETURNING id, run_at, xmax::text <> '0'

-- name: get_unique_job
SELECT id, run_at, args::text, kwargs::text, priority, queue
FROM que_jobs
WHERE job_class = %s AND que_core_unique_key = %s AND finished_at IS NULL AND expired_at IS NULL

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

-- name: hold_running
-- On an async def job's own session, before the job runs, when it was
-- claimed alone (migrations/7.7): take its running lock if its claiming
-- session still holds its claim, and release the running lock of the job
-- this session ran before, in one statement (for several jobs claimed
-- together, take_running each and running_claimed once cost less). Params:
-- job id (NULL: only the release), the claiming session's backend pid, the
-- id to release (NULL: none). True: the job may run.
SELECT que_core_hold_running(%s::bigint, %s::integer, %s::bigint)

-- name: take_running
-- On an async def job's own session, before the job runs: take its running
-- lock (migrations/7.7: the two-key lock (-1 - (id >> 32), low 32 bits of
-- id)) and release the one of the job this session ran before, in one plain
-- statement (que_core_hold_running's plpgsql call and pg_locks read cost
-- more than the round trip; see benchmarks/README.md). Params: the id to
-- release (NULL: none; the unlock is strict), twice, the job id (NULL: only
-- the release), twice. Second column true: taken. Whether the job's claim
-- still holds is asked after, once for the jobs claimed together
-- (running_claimed).
SELECT pg_advisory_unlock((-1 - (%s::bigint >> 32))::integer, ((%s::bigint << 32) >> 32)::integer),
       pg_try_advisory_lock((-1 - (%s::bigint >> 32))::integer, ((%s::bigint << 32) >> 32)::integer)

-- name: running_claimed
-- Once the running locks of the async def jobs claimed together are taken
-- (take_running, each on its job's session): which of those jobs (ids) the
-- claiming session (backend pid) still holds the claim lock of, one pg_locks
-- read for them all. Only those run: a claim lost before its running lock
-- was taken may be another worker's now; one lost after cannot be (no
-- que-core claim takes a job whose running lock is held). Params: the
-- claiming session's backend pid, the ids.
SELECT (l.classid::bigint << 32) | l.objid::bigint
FROM pg_locks AS l
WHERE l.locktype = 'advisory' AND l.pid = %s::integer AND l.objsubid = 1 AND l.granted
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND ((l.classid::bigint << 32) | l.objid::bigint) = ANY(%s::bigint[])

-- ---------------------------------------------------------------------------
-- Job control (migrations/7.6): the watchdog (que_core/watchdog.py), cancel,
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
-- que_core_cancel in migrations/7.6/up.sql.
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

-- fragment: prune_by(ended_at)
-- One batch of retention: jobs whose ended_at is older than %s seconds, at
-- most %s, oldest first (by an index on that column), skipping rows someone
-- has locked. Returns how many went.
WITH doomed AS (
  SELECT id FROM que_jobs
  WHERE ended_at < now() - %s * interval '1 second'
  ORDER BY ended_at
  LIMIT %s
  FOR UPDATE SKIP LOCKED
), gone AS (
  DELETE FROM que_jobs WHERE id IN (SELECT id FROM doomed) RETURNING id
)
SELECT count(*) FROM gone

-- name: prune_finished
-- Finished jobs (que_core_jobs_finished_at_idx).
{{prune_by(finished_at)}}

-- name: prune_expired
-- Expired jobs (cancelled ones included).
{{prune_by(expired_at)}}

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

-- ---------------------------------------------------------------------------
-- Results (que_core/results.py). A finished job's result wakes its waiters
-- with a NOTIFY on que_core_result_<id> (que_core_next_jobs, 7.3).

-- name: result_probe
-- Run twice before a wait: the same transaction_timestamp() both times says
-- the session is inside a transaction block (the driver's, with autocommit
-- off, or the caller's); the second column that the block has written
-- something (it is the caller's: never committed by a waiter).
SELECT transaction_timestamp(), txid_current_if_assigned() IS NOT NULL

-- name: job_result
-- A job's state as a waiter sees it. "cancelled": see results.py. The last
-- column: some session holds the job's lock (a worker keeps it until the
-- job's outcome, its result included, is committed).
SELECT CASE WHEN q.finished_at IS NOT NULL THEN 'finished'
            WHEN q.expired_at IS NOT NULL AND (q.data ? 'cancelled_at' OR q.data ? 'cancelled')
              THEN 'cancelled'
            WHEN q.expired_at IS NOT NULL THEN 'expired'
            ELSE 'waiting' END,
       q.que_core_result::text, q.last_error_message, q.last_error_backtrace,
       EXISTS (
         SELECT FROM pg_locks AS l
         WHERE l.locktype = 'advisory' AND l.objsubid = 1 AND l.granted
           AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
           AND (l.classid::bigint << 32) | l.objid::bigint = q.id
       )
FROM que_jobs AS q WHERE q.id = %s

-- ---------------------------------------------------------------------------
-- Periodic jobs (que_core/schedules.py).

-- name: db_now
SELECT clock_timestamp()

-- name: enqueue_tick
-- One tick of a schedule: its que_core_ticks row and its job, in one
-- statement, or nothing at all when the tick's row exists (another worker
-- enqueued it). A job with a unique key whose duplicate waits is not
-- inserted (the tick still counts as done). Params: schedule, tick, then the
-- job's queue, priority, class, args, kwargs, data, unique key.
WITH t AS (
  INSERT INTO que_core_ticks (schedule, tick, job_id)
  VALUES (%s, %s::timestamptz, nextval(pg_get_serial_sequence('que_jobs', 'id')))
  ON CONFLICT DO NOTHING
  RETURNING job_id
)
INSERT INTO que_jobs (id, queue, priority, run_at, job_class, args, kwargs, data,
                      job_schema_version, que_core_unique_key)
SELECT t.job_id, %s, %s, now(), %s, %s::jsonb, %s::jsonb, %s::jsonb, 2, %s FROM t
ON CONFLICT DO NOTHING
RETURNING id

-- name: tick_recorded
SELECT job_id FROM que_core_ticks WHERE schedule = %s AND tick = %s::timestamptz

-- name: last_ticks
-- Per schedule named, its latest enqueued tick, that tick's job and the
-- job's state now (NULL: the row is gone). Params: schedule names.
SELECT t.schedule, {{iso_utc(t.tick)}}, t.job_id,
       CASE WHEN j.id IS NULL THEN NULL ELSE que_determine_job_state(j) END
FROM (
  SELECT DISTINCT ON (schedule) schedule, tick, job_id
  FROM que_core_ticks
  WHERE schedule = ANY(%s::text[])
  ORDER BY schedule, tick DESC
) AS t
LEFT JOIN que_jobs AS j ON j.id = t.job_id

-- name: latest_tick
SELECT max(tick) FROM que_core_ticks WHERE schedule = %s

-- name: prune_ticks
-- Forget ticks older than the bound, keeping each schedule's latest (catch-up
-- starts after it). No worker enqueues a tick that old any more.
DELETE FROM que_core_ticks AS t
WHERE t.schedule = ANY(%s::text[]) AND t.tick < %s::timestamptz
  AND t.tick < (SELECT max(l.tick) FROM que_core_ticks AS l WHERE l.schedule = t.schedule)

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

-- name: worker_session
-- A worker thread's new session: its backend pid, and its application_name
-- set (param) so that `que web` can tell whose jobs it holds.
SELECT pg_backend_pid() FROM (SELECT set_config('application_name', %s, false)) AS s

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
-- was cancelled (data has "cancelled", see migrations/7.6) is "cancelled"
-- (fragment job_state). pg_locks shows a bigint
-- advisory key with its high half in classid, its low half in objid and
-- objsubid = 1 (two-int4-key locks, such as the migrators', have 2).
-- Filters travel as one JSON object (admin.JobFilter.to_json); a key that is
-- absent does not filter:
--   ids [bigint], queues [text], classes [text], states [text], tag text,
--   args jsonb (containment), kwargs jsonb (containment).
-- A class filter matches the stored job_class and, for Ruby ActiveJob
-- wrappers, the wrapped class, which is also what is shown.

-- fragment: held_job_locks
-- The job ids whose advisory lock some session of this database holds, and
-- that session's pid: a query of its own, used as `FROM ({{held_job_locks}}) AS h`.
SELECT (l.classid::bigint << 32) | l.objid::bigint AS id, l.pid
FROM pg_locks AS l
WHERE l.locktype = 'advisory' AND l.objsubid = 1 AND l.granted
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())

-- fragment: admin_locked
-- CTE locked: the job ids some other session holds now (with its pid).
locked AS (
  SELECT DISTINCT ON (1) h.id, h.pid FROM ({{held_job_locks}}) AS h
  WHERE h.pid <> pg_backend_pid()
)

-- fragment: shown_class(r)
CASE r.job_class
  WHEN 'ActiveJob::QueueAdapters::QueAdapter::JobWrapper'
    THEN coalesce(r.args -> 0 ->> 'job_class', r.job_class)
  ELSE r.job_class
END

-- fragment: job_state(r)
-- Que's que_determine_job_state, written out: that function is VOLATILE (by
-- default), so a view calling it is computed for every job before any filter,
-- ORDER BY or LIMIT applies (a full walk of que_jobs for one page).
CASE
  WHEN r.expired_at IS NOT NULL AND r.data -> 'cancelled' IS NOT NULL THEN 'cancelled'
  WHEN r.expired_at IS NOT NULL THEN 'expired'
  WHEN r.finished_at IS NOT NULL THEN 'finished'
  WHEN r.id IN (SELECT id FROM locked) THEN 'running'
  WHEN r.error_count > 0 THEN 'errored'
  WHEN r.run_at > now() THEN 'scheduled'
  ELSE 'ready'
END

-- fragment: admin_jobs
-- Two CTEs: locked (admin_locked) and j (every job with its shown_class and
-- state). Used as `{{admin_jobs}}` after WITH.
{{admin_locked}},
j AS (
  SELECT q.*, {{shown_class(q)}} AS shown_class, {{job_state(q)}} AS state
  FROM que_jobs AS q
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
  AND (p ->> 'error' IS NULL OR strpos(lower(j.last_error_message), lower(p ->> 'error')) > 0)
  -- What one state implies, in the terms of the partial indexes' predicates:
  -- the filter JSON is a constant, so the planner keeps only the line that
  -- applies, and may read que_core_retrying_idx, que_core_expired_idx or
  -- que_poll_idx instead of walking every job.
  AND (p -> 'states' IS DISTINCT FROM '["errored"]'
       OR (j.error_count > 0 AND j.finished_at IS NULL AND j.expired_at IS NULL))
  AND (p -> 'states' IS DISTINCT FROM '["expired"]' OR j.expired_at IS NOT NULL)
  AND (p -> 'states' IS DISTINCT FROM '["cancelled"]' OR j.expired_at IS NOT NULL)
  AND (p -> 'states' IS DISTINCT FROM '["ready"]' AND p -> 'states' IS DISTINCT FROM '["scheduled"]'
       OR (j.finished_at IS NULL AND j.expired_at IS NULL))

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

-- fragment: waiting_job(j)
-- A job que-core workers may take some time (que_poll_idx's rows).
j.job_schema_version = 2 AND j.finished_at IS NULL AND j.expired_at IS NULL

-- name: admin_queue_overview
-- Per queue (que-core's row format; the queues live workers take come too,
-- with zeros): jobs due now and later, retrying (error_count > 0) due now and
-- later, expired (and the cancelled among them); those running now and what
-- they would be otherwise; the oldest run_at due now that no session holds;
-- and since when and why the queue is paused (paused queues come too). Every count reads index rows
-- of its kind only, and no more than a cap (param: cap + 1, five times) per
-- queue and priority (waiting) or per queue (retrying, expired): the work is
-- bounded however big the table is. Columns: queue, due, due capped, later,
-- later capped, retrying due, retrying later, expired (each up to cap + 1),
-- cancelled (among those expired), running, running errored, running later,
-- oldest due age (s), paused at (NULL: not paused), pause reason.
--
-- que_poll_idx is (job_schema_version, queue, priority, run_at, id): each
-- (queue, priority) is found with one probe (prios), and within it the jobs
-- due now and later are two ranges of run_at.
WITH RECURSIVE {{admin_locked}},
running AS (
  SELECT q.queue, count(*) AS n,
         count(*) FILTER (WHERE q.error_count > 0) AS errored,
         count(*) FILTER (WHERE q.error_count = 0 AND q.run_at > now()) AS later
  FROM que_jobs AS q
  WHERE q.id IN (SELECT id FROM locked) AND q.finished_at IS NULL AND q.expired_at IS NULL
  GROUP BY q.queue
),
prios(queue, priority) AS (
  (SELECT j.queue, j.priority FROM que_jobs AS j WHERE {{waiting_job(j)}}
   ORDER BY j.job_schema_version, j.queue, j.priority LIMIT 1)
  UNION ALL
  SELECT x.queue, x.priority FROM prios AS p CROSS JOIN LATERAL (
    SELECT j.queue, j.priority FROM que_jobs AS j
    WHERE {{waiting_job(j)}} AND (j.queue, j.priority) > (p.queue, p.priority)
    ORDER BY j.job_schema_version, j.queue, j.priority LIMIT 1
  ) AS x
),
waiting AS (
  SELECT p.queue, sum(c.due) AS due, bool_or(c.due = c.cap) AS due_capped,
         sum(c.later) AS later, bool_or(c.later = c.cap) AS later_capped,
         min(c.oldest) AS oldest
  FROM prios AS p CROSS JOIN LATERAL (
    SELECT %s::integer AS cap,
      (SELECT count(*) FROM (SELECT FROM que_jobs AS j
         WHERE {{waiting_job(j)}} AND j.queue = p.queue AND j.priority = p.priority
           AND j.run_at <= now() LIMIT %s) AS c) AS due,
      (SELECT count(*) FROM (SELECT FROM que_jobs AS j
         WHERE {{waiting_job(j)}} AND j.queue = p.queue AND j.priority = p.priority
           AND j.run_at > now() LIMIT %s) AS c) AS later,
      (SELECT greatest(j.run_at, '0001-01-02 00:00:00+00') FROM que_jobs AS j
         WHERE {{waiting_job(j)}} AND j.queue = p.queue AND j.priority = p.priority
           AND j.run_at <= now() AND j.id <> ALL(ARRAY(SELECT id FROM locked))
         ORDER BY j.run_at LIMIT 1) AS oldest
  ) AS c
  GROUP BY p.queue
),
expired_queues(queue) AS (
  (SELECT j.queue FROM que_jobs AS j WHERE j.expired_at IS NOT NULL ORDER BY j.queue LIMIT 1)
  UNION ALL
  SELECT (SELECT j.queue FROM que_jobs AS j WHERE j.expired_at IS NOT NULL AND j.queue > e.queue
          ORDER BY j.queue LIMIT 1)
  FROM expired_queues AS e WHERE e.queue IS NOT NULL
),
names AS (
  SELECT queue FROM waiting
  UNION SELECT queue FROM expired_queues WHERE queue IS NOT NULL
  UNION SELECT unnest(queues) FROM que_lockers WHERE pid IN ({{live_sessions}})
  UNION SELECT queue FROM running
  UNION SELECT queue FROM que_core_paused_queues
)
SELECT n.queue,
       coalesce(w.due, 0), coalesce(w.due_capped, false),
       coalesce(w.later, 0), coalesce(w.later_capped, false),
       (SELECT count(*) FROM (SELECT FROM que_jobs AS j
          WHERE j.queue = n.queue AND j.error_count > 0 AND j.finished_at IS NULL
            AND j.expired_at IS NULL AND j.run_at <= now() LIMIT %s) AS c),
       (SELECT count(*) FROM (SELECT FROM que_jobs AS j
          WHERE j.queue = n.queue AND j.error_count > 0 AND j.finished_at IS NULL
            AND j.expired_at IS NULL AND j.run_at > now() LIMIT %s) AS c),
       e.n, e.cancelled,
       coalesce(k.n, 0), coalesce(k.errored, 0), coalesce(k.later, 0),
       extract(epoch FROM now() - w.oldest)::float8,
       {{iso_utc(p.paused_at)}}, p.reason
FROM names AS n
LEFT JOIN waiting AS w ON w.queue = n.queue
LEFT JOIN running AS k ON k.queue = n.queue
LEFT JOIN que_core_paused_queues AS p ON p.queue = n.queue
-- The same capped walk of que_core_expired_idx as before, now reading each
-- row's data too: the cancelled ones among them (see job_state).
CROSS JOIN LATERAL (
  SELECT count(*) AS n, count(*) FILTER (WHERE c.cancelled) AS cancelled
  FROM (SELECT j.data -> 'cancelled' IS NOT NULL AS cancelled FROM que_jobs AS j
        WHERE j.queue = n.queue AND j.expired_at IS NOT NULL LIMIT %s) AS c
) AS e
ORDER BY n.queue

-- name: admin_running
-- The jobs some other session holds now, and who holds them: the session's
-- backend pid and, from que_lockers, the worker process's host and pid (a Ruby
-- Que locker holds its jobs on its registered session; a que-core worker
-- thread's session is named after its process, see worker_thread.session_name).
-- Params: row limit.
WITH {{admin_locked}}
SELECT q.id, q.queue, {{shown_class(q)}}, q.priority,
       {{iso_utc(q.run_at)}},
       q.error_count, k.pid, w.ruby_hostname, w.ruby_pid,
       extract(epoch FROM now() - a.state_change)::float8
FROM locked AS k
JOIN que_jobs AS q ON q.id = k.id AND q.finished_at IS NULL AND q.expired_at IS NULL
LEFT JOIN pg_stat_activity AS a ON a.pid = k.pid
LEFT JOIN LATERAL (
  SELECT l.ruby_hostname, l.ruby_pid FROM que_lockers AS l
  WHERE l.pid = k.pid
     OR a.application_name = left('que ' || l.ruby_pid || '@' || l.ruby_hostname, 63)
  ORDER BY l.pid = k.pid DESC
  LIMIT 1
) AS w ON true
ORDER BY q.id
LIMIT %s

-- name: web_session
-- A dashboard session: its statements are short, and the overview's estimated
-- cost (bounded counts the planner cannot bound) would make JIT compile it,
-- seconds on a loaded machine.
SELECT set_config('jit', 'off', false)

-- name: admin_cancel_jobs
-- Cancel every job matching the filter (param: filter JSON, reason), as
-- que_core_cancel does: how many had each result.
WITH params AS (SELECT %s::jsonb AS p), {{admin_jobs}}
SELECT c.result, count(*)
FROM que_core_cancel(ARRAY(
  SELECT j.id FROM j, params
  {{admin_match}}
), %s::text) AS c
GROUP BY c.result

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

-- fragment: admin_job_columns
j.id, j.queue, j.shown_class, j.state, j.priority,
{{iso_utc(j.run_at)}},
j.error_count, j.last_error_message,
{{iso_utc(j.finished_at)}},
{{iso_utc(j.expired_at)}},
j.args::text, j.kwargs::text, j.data::text, j.job_class, j.job_schema_version

-- name: admin_list_jobs
-- Params: filter JSON, row limit.
WITH params AS (SELECT %s::jsonb AS p), {{admin_jobs}}
SELECT {{admin_job_columns}}
FROM j, params
{{admin_match}}
ORDER BY j.id
LIMIT %s

-- name: admin_page_jobs
-- A page of the matching jobs, newest first, for keyset paging, among the
-- next jobs by id only (a window: a filter that matches few jobs does not walk
-- the whole table for one page). Params: filter JSON, the id to start below,
-- the window's size, row limit.
WITH params AS (SELECT %s::jsonb AS p), {{admin_locked}},
w AS (SELECT * FROM que_jobs WHERE id < %s::bigint ORDER BY id DESC LIMIT %s),
j AS (
  SELECT q.*, {{shown_class(q)}} AS shown_class, {{job_state(q)}} AS state
  FROM w AS q
)
SELECT {{admin_job_columns}}
FROM j, params
{{admin_match}}
ORDER BY j.id DESC
LIMIT %s

-- name: admin_page_boundary
-- The last id of admin_page_jobs' window (params: below, window size); no
-- row when the window reached the oldest job.
SELECT id FROM que_jobs WHERE id < %s::bigint ORDER BY id DESC OFFSET %s LIMIT 1

-- name: admin_get_job
WITH {{admin_locked}}
SELECT q.id, q.queue, q.job_class, q.priority,
       {{iso_utc(q.run_at)}},
       q.error_count, q.last_error_message, q.last_error_backtrace,
       {{iso_utc(q.finished_at)}},
       {{iso_utc(q.expired_at)}},
       q.args::text, q.kwargs::text, q.data::text, q.job_schema_version, {{job_state(q)}},
       q.que_core_result::text
FROM que_jobs AS q WHERE q.id = %s

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
-- Finished jobs are left alone, and so is an expired unique job whose key
-- another job of its class holds now.
{{admin_claim}}
changed AS (
  UPDATE que_jobs AS u SET run_at = now(), expired_at = NULL, data = u.data - 'cancelled'
  WHERE u.id IN (SELECT id FROM c WHERE free) AND u.finished_at IS NULL
    AND (u.que_core_unique_key IS NULL OR u.expired_at IS NULL OR NOT EXISTS (
      SELECT FROM que_jobs AS o
      WHERE o.job_class = u.job_class AND o.que_core_unique_key = u.que_core_unique_key
        AND o.finished_at IS NULL AND o.expired_at IS NULL))
  RETURNING u.id
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
  AND NOT EXISTS (SELECT 1 FROM ({{held_job_locks}}) AS h WHERE h.id = q.id)
GROUP BY q.queue
ORDER BY q.queue

-- name: job_count
-- Every job, whatever its state (`que drop` asks with it).
SELECT count(*) FROM que_jobs

-- name: ping
-- A round trip that reads nothing (to open a session's connection).
SELECT 1

-- ---------------------------------------------------------------------------
-- Django's Tasks framework (que_core/contrib/django/tasks.py): a task's
-- result lives in its job's data, under django_task.

-- fragment: django_task
coalesce(data->'django_task', '{}'::jsonb)

-- name: django_task_started
-- Params: started_at (kept from the first attempt), last_attempted_at, worker id, job id.
UPDATE que_jobs
SET data = jsonb_set(data, '{django_task}', {{django_task}} || jsonb_build_object(
  'started_at', coalesce(data #> '{django_task,started_at}', to_jsonb(%s::text)),
  'last_attempted_at', %s::text,
  'worker_ids', coalesce(data #> '{django_task,worker_ids}', '[]'::jsonb) || to_jsonb(%s::text)))
WHERE id = %s

-- name: django_task_failed
-- Params: the error (JSON), finished_at, job id.
UPDATE que_jobs
SET data = jsonb_set(data, '{django_task}', {{django_task}} || jsonb_build_object(
  'errors', coalesce(data #> '{django_task,errors}', '[]'::jsonb) || jsonb_build_array(%s::jsonb),
  'finished_at', %s::text))
WHERE id = %s

-- name: django_task_succeeded
-- Params: the return value (JSON), finished_at, job id.
UPDATE que_jobs
SET data = jsonb_set(data, '{django_task}', {{django_task}} || jsonb_build_object(
  'return_value', %s::jsonb, 'finished_at', %s::text))
WHERE id = %s

-- name: django_task_result
-- Params: job id. The last column: whether a worker holds the job now.
SELECT j.job_class, j.queue, j.priority, j.run_at, j.error_count, j.args::text, j.kwargs::text,
       j.data::text, j.finished_at IS NOT NULL, j.expired_at IS NOT NULL,
       EXISTS (SELECT 1 FROM ({{held_job_locks}}) AS h WHERE h.id = j.id)
FROM que_jobs AS j
WHERE j.id = %s

-- ---------------------------------------------------------------------------
-- Whole databases (que_core/databases.py, que_core/testing/databases.py: the
-- demo's and the tests'). Names are identifiers, never parameters: the
-- server quotes them (format's %I) and the statement it returns is run.

-- name: create_database_sql
SELECT format('CREATE DATABASE %%I', %s::text)

-- name: drop_database_sql
SELECT format('DROP DATABASE IF EXISTS %%I WITH (FORCE)', %s::text)

-- name: listen_sql
-- A locker's channel (que_core/listener.py).
SELECT format('LISTEN %%I', %s::text)

-- name: backend_pid_probe
-- que_core/pooler.py adds a new suffix each time: a driver that prepares a
-- statement it sees repeatedly would fail behind a transaction pooler.
SELECT pg_backend_pid() AS probe

-- name: drop_schema_sql
SELECT format('DROP SCHEMA %%I CASCADE', %s::text)

-- name: terminate_database_sessions
-- Params: database name. How many sessions were told to end.
SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
WHERE datname = %s AND pid <> pg_backend_pid()

-- name: database_sessions
-- Params: database name. Sessions on it besides this one.
SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()

-- name: user_schemas
SELECT nspname FROM pg_namespace
WHERE nspname <> 'information_schema' AND left(nspname, 3) <> 'pg_'

-- name: new_public_schema
CREATE SCHEMA public;
GRANT ALL ON SCHEMA public TO PUBLIC

-- ---------------------------------------------------------------------------
-- The demo (que_core/demo.py) and its ledger table.

-- name: demo_server
SELECT split_part(current_setting('server_version'), ' ', 1), current_database()

-- name: demo_create_ledger
CREATE TABLE que_demo_ledger (job_id bigint PRIMARY KEY, amount int)

-- name: demo_ledger_entry
INSERT INTO que_demo_ledger (job_id, amount) VALUES (%s, %s)

-- name: demo_outcome
-- Jobs still to work, expired rows, ledger rows.
SELECT (SELECT count(*) FROM que_jobs WHERE finished_at IS NULL AND expired_at IS NULL),
       (SELECT count(*) FROM que_jobs WHERE expired_at IS NOT NULL),
       (SELECT count(*) FROM que_demo_ledger)

-- name: throughput_add
-- A worker process's tallies since its last flush (que_core/throughput.py), a
-- JSON array of {minute (epoch s), queue, done, failed, latency_sum,
-- latency_max}, added to its minute's rows; rows older than a day go.
WITH pruned AS (
  DELETE FROM que_core_throughput WHERE minute < now() - interval '1 day'
)
INSERT INTO que_core_throughput AS t (minute, queue, done, failed, latency_sum, latency_max)
SELECT to_timestamp(r.minute), r.queue, r.done, r.failed, r.latency_sum, r.latency_max
FROM jsonb_to_recordset(%s::jsonb)
  AS r(minute bigint, queue text, done bigint, failed bigint,
       latency_sum float8, latency_max float8)
ORDER BY r.minute, r.queue
ON CONFLICT (minute, queue) DO UPDATE
SET done = t.done + excluded.done,
    failed = t.failed + excluded.failed,
    latency_sum = t.latency_sum + excluded.latency_sum,
    latency_max = greatest(t.latency_max, excluded.latency_max)

-- name: throughput_recent
-- The last hour's minutes (of one queue, or all when the param is NULL):
-- minute (epoch s), runs done and failed, mean and most latency (s).
SELECT extract(epoch FROM minute)::bigint, sum(done), sum(failed),
       sum(latency_sum) / nullif(sum(done + failed), 0), max(latency_max)
FROM que_core_throughput
WHERE minute > now() - interval '1 hour' AND (%s::text IS NULL OR queue = %s::text)
GROUP BY minute
ORDER BY minute
