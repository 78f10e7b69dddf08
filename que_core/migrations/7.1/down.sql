-- Back to version 7's que_job_notify (as Que 2.4 has it).

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
    FROM que_lockers AS ql
    CROSS JOIN LATERAL generate_series(1, ql.worker_count) AS slot
    WHERE ql.listening
      AND ql.queues @> ARRAY[NEW.queue]
      AND ql.job_schema_version = NEW.job_schema_version
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
