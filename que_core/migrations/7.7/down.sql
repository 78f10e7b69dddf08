-- Back to revision 7.6: que_core_next_jobs as 7.6 made it (no running
-- locks); que_core_hold_running goes.

DROP FUNCTION que_core_hold_running(bigint, integer, bigint);

CREATE OR REPLACE FUNCTION que_core_next_jobs(
  -- jobs that returned without resolving themselves: deleted
  finished bigint[],
  -- other outcomes, a JSON array of {"id", "op": "finish" | "error" | "expire"
  -- | "result" | "cancel", "delay" (s, errors), "message", "backtrace", for a
  -- job whose class keeps its result: "keep": true and "result" (JSON), and
  -- "at" and "reason" (cancel: when it was asked for, and why)} (or NULL)
  outcomes jsonb,
  -- locks to release: outcomes committed by an earlier call (a lock is only
  -- ever released once its job's outcome is committed, so that no other
  -- session can take the job while its row still looks waiting)
  unlock bigint[],
  -- the queues to take jobs from, in order (NULL: any queue)
  queues text[],
  max_priority integer,
  lim integer,
  -- ids never to lock (held by this session already: advisory locks are
  -- re-entrant; or set aside)
  exclude bigint[],
  -- per queue (aligned with queues; NULL: from the start), where the walk
  -- starts: after this (priority, run_at, id), the last job this session took
  -- from it. Jobs before it were taken already, and the rows of those done are
  -- dead until vacuumed: walking through them on every call made a drain
  -- slower the longer it ran.
  after_priority integer[] DEFAULT NULL,
  after_run_at timestamptz[] DEFAULT NULL,
  after_id bigint[] DEFAULT NULL,
  -- revision 7.3: take only jobs of these classes (NULL: any), and none of
  -- those (NULL: none). A worker's event loop takes its async def job classes,
  -- its threads the rest.
  only_classes text[] DEFAULT NULL,
  skip_classes text[] DEFAULT NULL
) RETURNS TABLE (id bigint, priority smallint, run_at timestamptz, job_class text,
                 queue text, error_count integer, args text, kwargs text, data text)
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
  quiet text := current_setting('que.skip_notify', true);
  skip bigint[] := coalesce(exclude, '{}') || coalesce(finished, '{}');
  not_classes text[] := coalesce(skip_classes, '{}');
  locked bigint[] := '{}';
  fresh bigint[] := '{}';
  qname text;
  qi integer;
  bp integer;
  br timestamptz;
  bi bigint;
  candidate bigint;
  walk refcursor;
  ended bigint[];
BEGIN
  -- Nothing listens to Que's que_state channel: a NOTIFY per row would
  -- serialise every worker's commits.
  PERFORM set_config('que.skip_notify', 'true', true);
  IF cardinality(finished) > 0 THEN
    DELETE FROM que_jobs AS j WHERE j.id = ANY(finished);
  END IF;
  IF outcomes IS NOT NULL THEN
    skip := skip || ARRAY(SELECT (o ->> 'id')::bigint FROM jsonb_array_elements(outcomes) AS o);
    UPDATE que_jobs AS j
    SET finished_at = now(),
        que_core_result = CASE WHEN o.keep THEN o.result ELSE j.que_core_result END
    FROM jsonb_to_recordset(outcomes) AS o(id bigint, op text, keep boolean, result jsonb)
    WHERE j.id = o.id AND o.op = 'finish' AND j.finished_at IS NULL AND j.expired_at IS NULL;
    IF outcomes @> '[{"keep": true}]' THEN
      -- A job that resolved itself (finish() in run(), say) and keeps its result.
      UPDATE que_jobs AS j
      SET que_core_result = o.result
      FROM jsonb_to_recordset(outcomes) AS o(id bigint, op text, result jsonb)
      WHERE j.id = o.id AND o.op = 'result';
      -- Wake whoever waits for these jobs' results (que_core.result).
      PERFORM pg_notify('que_core_result_' || (o ->> 'id'), o ->> 'op')
      FROM jsonb_array_elements(outcomes) AS o
      WHERE (o ->> 'keep')::boolean;
    END IF;
    -- error_count stops at the integer's limit: a row written with
    -- 2147483647 must still take its error. Limits are the check constraints'.
    UPDATE que_jobs AS j
    SET error_count = least(j.error_count, 2147483646) + 1,
        run_at = CASE WHEN o.op = 'error' THEN now() + o.delay * interval '1 second'
                      ELSE j.run_at END,
        expired_at = CASE WHEN o.op = 'expire' THEN now() END,
        last_error_message = left(o.message, 500),
        last_error_backtrace = left(o.backtrace, 10000)
    FROM jsonb_to_recordset(outcomes)
      AS o(id bigint, op text, delay float8, message text, backtrace text)
    WHERE j.id = o.id AND o.op IN ('error', 'expire')
      AND j.finished_at IS NULL AND j.expired_at IS NULL;
    -- A job stopped because it was cancelled (see que_core_cancel).
    IF outcomes @> '[{"op": "cancel"}]' THEN
      UPDATE que_jobs AS j
      SET expired_at = now(),
          data = j.data || jsonb_build_object('cancelled',
                   jsonb_build_object('at', o.at, 'reason', o.reason))
      FROM jsonb_to_recordset(outcomes) AS o(id bigint, op text, at text, reason text)
      WHERE j.id = o.id AND o.op = 'cancel' AND j.finished_at IS NULL AND j.expired_at IS NULL;
    END IF;
  END IF;
  -- Cancel requests of the jobs whose outcomes this call wrote: one still
  -- waiting (it failed, and would be retried) is cancelled now; one that
  -- ended first keeps its end. The table is nearly always empty.
  IF EXISTS (SELECT FROM que_core_cancels) THEN
    ended := coalesce(finished, '{}')
             || ARRAY(SELECT (o ->> 'id')::bigint FROM jsonb_array_elements(outcomes) AS o);
    PERFORM que_core_apply_cancels(ended);
  END IF;
  PERFORM set_config('que.skip_notify', coalesce(quiet, ''), true);
  IF cardinality(unlock) > 0 THEN
    PERFORM pg_advisory_unlock(v) FROM unnest(unlock) AS v;
  END IF;
  IF lim <= 0 THEN
    RETURN;
  END IF;

  -- Walk the ready jobs in que_poll_idx order, queue by queue (from where
  -- the session left it, if told), and try-lock each until lim are ours. The lock is taken here, in the loop, never in
  -- a query's WHERE clause: a lock taken on a row the planner drops would
  -- leak. Two queries, so that the cached plan of each uses the index.
  FOR qi IN 1 .. coalesce(cardinality(queues), 1) LOOP
    qname := queues[qi];
    -- (priority, run_at, id) > (-32769, ...) holds for every row: no bound.
    bp := coalesce(after_priority[qi], -32769);
    br := coalesce(after_run_at[qi], '-infinity');
    bi := coalesce(after_id[qi], 0);
    -- A paused queue (que queues pause) gives no new jobs.
    CONTINUE WHEN qname IS NOT NULL
                  AND EXISTS (SELECT FROM que_core_paused_queues AS p WHERE p.queue = qname);
    IF qname IS NULL THEN
      OPEN walk FOR
        SELECT j.id FROM que_jobs AS j
        WHERE j.job_schema_version = 2 AND j.priority <= max_priority
          AND j.run_at <= now() AND j.finished_at IS NULL AND j.expired_at IS NULL
          AND NOT (j.id = ANY(skip))
          AND NOT EXISTS (SELECT FROM que_core_paused_queues AS p WHERE p.queue = j.queue)
          AND (only_classes IS NULL OR j.job_class = ANY(only_classes))
          AND NOT (j.job_class = ANY(not_classes))
        ORDER BY j.priority, j.run_at, j.id;
    ELSE
      OPEN walk FOR
        SELECT j.id FROM que_jobs AS j
        WHERE j.job_schema_version = 2 AND j.queue = qname AND j.priority <= max_priority
          AND (j.priority, j.run_at, j.id) > (bp, br, bi)
          AND j.run_at <= now() AND j.finished_at IS NULL AND j.expired_at IS NULL
          AND NOT (j.id = ANY(skip))
          AND (only_classes IS NULL OR j.job_class = ANY(only_classes))
          AND NOT (j.job_class = ANY(not_classes))
        ORDER BY j.priority, j.run_at, j.id;
    END IF;
    LOOP
      FETCH walk INTO candidate;
      EXIT WHEN NOT FOUND;
      IF pg_try_advisory_lock(candidate) THEN
        locked := locked || candidate;
        EXIT WHEN cardinality(locked) >= lim;
      END IF;
    END LOOP;
    CLOSE walk;
    EXIT WHEN cardinality(locked) >= lim;
  END LOOP;
  IF cardinality(locked) = 0 THEN
    RETURN;
  END IF;
  -- A job cancelled while a worker held it, whose worker ended before it
  -- could stop it (kill -9): cancelled now, instead of run.
  IF EXISTS (SELECT FROM que_core_cancels AS c WHERE c.job_id = ANY(locked)) THEN
    PERFORM set_config('que.skip_notify', 'true', true);
    PERFORM que_core_apply_cancels(locked);
    PERFORM set_config('que.skip_notify', coalesce(quiet, ''), true);
  END IF;

  -- Advisory locks ignore MVCC: the walk's snapshot may show a job that
  -- another worker resolved and unlocked just before we locked it. This
  -- query takes a fresh snapshot (at READ COMMITTED, as worker sessions
  -- are) and returns only jobs really still waiting. run_at is clamped
  -- into the years 1 to 9999: no driver loads -infinity or a BC date into a
  -- datetime, and a row another program wrote must not stop the worker.
  -- In the order they were locked: queue by queue, most important first.
  FOR id, priority, run_at, job_class, queue, error_count, args, kwargs, data IN
    SELECT j.id, j.priority,
           least(greatest(j.run_at, '0001-01-02 00:00:00+00'), '9999-12-30 00:00:00+00'),
           j.job_class, j.queue, j.error_count, j.args::text, j.kwargs::text, j.data::text
    FROM que_jobs AS j
    WHERE j.id = ANY(locked) AND j.finished_at IS NULL AND j.expired_at IS NULL
    ORDER BY array_position(locked, j.id)
  LOOP
    fresh := fresh || id;
    RETURN NEXT;
  END LOOP;
  -- Resolved by someone else meanwhile: nothing of ours to commit.
  PERFORM pg_advisory_unlock(v) FROM unnest(locked) AS v WHERE NOT (v = ANY(fresh));
END
$$;
