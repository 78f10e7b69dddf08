-- que-core revision 7.1: que_job_notify tells only lockers that are live
-- sessions of this database, and counts at most 100 slots per locker. Any
-- program that can write que_lockers could otherwise make every INSERT walk
-- a million slots, or send every new job's notification to a process that
-- never works it (a fake row naming the checkpointer's pid). Ruby Que's
-- lockers are client sessions of this database too, so they are still told.
-- pg_stat_get_activity(pid) shows every session's database to every role
-- (its backend_type only to the same role or pg_read_all_stats: NULL
-- otherwise); asked per locker row, it costs next to nothing, where the whole
-- of pg_stat_activity per INSERT cost more than the rest of the INSERT.

CREATE OR REPLACE FUNCTION que_job_notify() RETURNS trigger
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
  target_pid integer;
BEGIN
  IF NEW.run_at > now() THEN
    RETURN NULL;
  END IF;

  SELECT slots.pid
  INTO target_pid
  FROM (
    SELECT
      ql.pid,
      row_number() OVER (ORDER BY hashtext(ql.pid::text || '/' || slot::text), ql.pid, slot) - 1
        AS position,
      count(*) OVER () AS slot_count
    FROM (
      SELECT l.pid, l.worker_count
      FROM que_lockers AS l
      WHERE l.listening
        AND l.queues @> ARRAY[NEW.queue]
        AND l.job_schema_version = NEW.job_schema_version
        AND EXISTS (
          SELECT FROM pg_catalog.pg_stat_get_activity(l.pid) AS a
          WHERE a.datid = (SELECT d.oid FROM pg_catalog.pg_database AS d
                           WHERE d.datname = current_database())
            AND coalesce(a.backend_type, 'client backend') = 'client backend'
        )
      OFFSET 0
    ) AS ql
    CROSS JOIN LATERAL generate_series(1, least(greatest(ql.worker_count, 1), 100)) AS slot
  ) AS slots
  WHERE slots.position = mod(NEW.id, slots.slot_count);

  IF target_pid IS NOT NULL THEN
    PERFORM pg_notify(
      'que_listener_' || target_pid::text,
      json_build_object(
        'message_type', 'job_available',
        'queue',        NEW.queue,
        'priority',     NEW.priority,
        'id',           NEW.id,
        'run_at',       to_char(NEW.run_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
      )::text
    );
  END IF;

  RETURN NULL;
END
$$;
