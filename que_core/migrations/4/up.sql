-- que-core schema version 4: the Que 1.x layout.
--
-- * que_jobs is keyed by id alone; finished and expired jobs stay in the
--   table (finished_at, expired_at); args become jsonb; a free-form data
--   object (with optional tags) and a separate error backtrace are added;
--   the poll index covers only jobs that are still to be worked.
-- * que_lockers: one row per worker process, read by the job_notify trigger.
-- * que_values: a small key/value store (unused so far).
-- * Triggers: que_job_notify tells one listening locker about a new job;
--   que_state_notify announces every state change on the que_state channel.
--
-- Object names (constraints, indexes, sequence, functions, triggers) are the
-- ones Ruby's Que uses, so that either tool can migrate the other's database.

-- Leave room on each page for the updates a job row goes through.
ALTER TABLE que_jobs SET (fillfactor = 90);

ALTER TABLE que_jobs DROP CONSTRAINT que_jobs_pkey;
ALTER TABLE que_jobs RENAME COLUMN job_id TO id;
ALTER SEQUENCE que_jobs_job_id_seq RENAME TO que_jobs_id_seq;
ALTER TABLE que_jobs RENAME COLUMN last_error TO last_error_message;
ALTER TABLE que_jobs RENAME COLUMN args TO old_args;

ALTER TABLE que_jobs
  ADD COLUMN last_error_backtrace text,
  ADD COLUMN finished_at          timestamptz,
  ADD COLUMN expired_at           timestamptz,
  ADD COLUMN args                 jsonb,
  ADD COLUMN data                 jsonb;

-- Carry existing jobs over. Version 3 kept the message and the backtrace in
-- one text (first line = message); the empty queue name becomes 'default';
-- args that were not an array become a one-element array. Every expression
-- below sees the row as it was before this UPDATE.
UPDATE que_jobs
SET
  queue = CASE WHEN queue = '' THEN 'default' ELSE queue END,
  last_error_backtrace =
    CASE
      WHEN strpos(last_error_message, E'\n') > 0 THEN
        left(substr(last_error_message, strpos(last_error_message, E'\n') + 1), 10000)
    END,
  last_error_message = left(split_part(last_error_message, E'\n', 1), 500),
  args =
    CASE
      WHEN json_typeof(old_args) = 'array' THEN old_args::jsonb
      ELSE jsonb_build_array(old_args::jsonb)
    END,
  data = '{}'::jsonb;

-- True when every element of the array is a string of at most 100
-- characters, counted on its JSON text (quotes included), as Que counts.
-- An empty array gives NULL, which a CHECK accepts.
CREATE FUNCTION que_validate_tags(tags_array jsonb) RETURNS boolean
LANGUAGE sql
AS $$
  SELECT bool_and(jsonb_typeof(tag) = 'string' AND char_length(tag::text) <= 100)
  FROM jsonb_array_elements(tags_array) AS tags(tag)
$$;

ALTER TABLE que_jobs
  DROP COLUMN old_args,
  ALTER COLUMN queue SET DEFAULT 'default',
  ALTER COLUMN args  SET DEFAULT '[]'::jsonb,
  ALTER COLUMN args  SET NOT NULL,
  ALTER COLUMN data  SET DEFAULT '{}'::jsonb,
  ALTER COLUMN data  SET NOT NULL,
  ADD CONSTRAINT que_jobs_pkey PRIMARY KEY (id),
  ADD CONSTRAINT error_length CHECK (
    char_length(last_error_message) <= 500
    AND char_length(last_error_backtrace) <= 10000
  ),
  -- An ActiveJob wrapper carries the real class name in its first argument.
  ADD CONSTRAINT job_class_length CHECK (
    char_length(
      CASE job_class
        WHEN 'ActiveJob::QueueAdapters::QueAdapter::JobWrapper'
          THEN args -> 0 ->> 'job_class'
        ELSE job_class
      END
    ) <= 200
  ),
  ADD CONSTRAINT queue_length CHECK (char_length(queue) <= 100),
  ADD CONSTRAINT valid_args CHECK (jsonb_typeof(args) = 'array'),
  ADD CONSTRAINT valid_data CHECK (
    jsonb_typeof(data) = 'object'
    AND (
      NOT data ? 'tags'
      OR (
        jsonb_typeof(data -> 'tags') = 'array'
        AND jsonb_array_length(data -> 'tags') <= 5
        AND que_validate_tags(data -> 'tags')
      )
    )
  );

CREATE INDEX que_poll_idx ON que_jobs (queue, priority, run_at, id)
  WHERE finished_at IS NULL AND expired_at IS NULL;
CREATE INDEX que_jobs_data_gin_idx ON que_jobs USING gin (data jsonb_path_ops);
CREATE INDEX que_jobs_args_gin_idx ON que_jobs USING gin (args jsonb_path_ops);

CREATE TABLE que_values (
  key   text  PRIMARY KEY,
  value jsonb NOT NULL DEFAULT '{}'::jsonb,

  CONSTRAINT valid_value CHECK (jsonb_typeof(value) = 'object')
)
WITH (fillfactor = 90);

-- Rows live as long as their worker process's locking session, so they need
-- no crash safety.
CREATE UNLOGGED TABLE que_lockers (
  pid               integer   NOT NULL,
  worker_count      integer   NOT NULL,
  worker_priorities integer[] NOT NULL,
  ruby_pid          integer   NOT NULL,
  ruby_hostname     text      NOT NULL,
  queues            text[]    NOT NULL,
  listening         boolean   NOT NULL,

  CONSTRAINT que_lockers_pkey PRIMARY KEY (pid),
  -- One-dimensional and not empty (array_length is NULL for an empty array).
  CONSTRAINT valid_worker_priorities CHECK (
    array_ndims(worker_priorities) = 1
    AND array_length(worker_priorities, 1) IS NOT NULL
  ),
  CONSTRAINT valid_queues CHECK (
    array_ndims(queues) = 1
    AND array_length(queues, 1) IS NOT NULL
  )
);

-- Tell ONE listening locker that serves the job's queue about a new job that
-- is due now. Each locker counts once per worker (weighting), the slots are
-- shuffled by a hash and the job id picks the slot, so consecutive jobs go
-- round all lockers. Only a few fields are sent (NOTIFY payloads are limited
-- in size); the locker reads the row after locking it.
CREATE FUNCTION que_job_notify() RETURNS trigger
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

CREATE TRIGGER que_job_notify
  AFTER INSERT ON que_jobs
  FOR EACH ROW
  EXECUTE FUNCTION que_job_notify();

-- The state a job row is in, most final first.
CREATE FUNCTION que_determine_job_state(job que_jobs) RETURNS text
LANGUAGE sql
AS $$
  SELECT CASE
    WHEN job.expired_at IS NOT NULL THEN 'expired'
    WHEN job.finished_at IS NOT NULL THEN 'finished'
    WHEN job.error_count > 0 THEN 'errored'
    WHEN job.run_at > CURRENT_TIMESTAMP THEN 'scheduled'
    ELSE 'ready'
  END
$$;

-- Announce each change of a job's state on the que_state channel (kept for
-- compatibility; nothing in que-core listens to it).
CREATE FUNCTION que_state_notify() RETURNS trigger
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
  job record;
  previous_state text;
  current_state text;
BEGIN
  IF TG_OP = 'INSERT' THEN
    job := NEW;
    previous_state := 'nonexistent';
    current_state := que_determine_job_state(NEW);
  ELSIF TG_OP = 'DELETE' THEN
    job := OLD;
    previous_state := que_determine_job_state(OLD);
    current_state := 'nonexistent';
  ELSIF TG_OP = 'UPDATE' THEN
    job := NEW;
    previous_state := que_determine_job_state(OLD);
    current_state := que_determine_job_state(NEW);
    IF previous_state = current_state THEN
      RETURN NULL;
    END IF;
  ELSE
    RAISE EXCEPTION USING MESSAGE = 'que_state_notify: unexpected operation ' || TG_OP;
  END IF;

  PERFORM pg_notify(
    'que_state',
    json_build_object(
      'message_type',   'job_change',
      'id',             job.id,
      'queue',          job.queue,
      'tags',           coalesce(job.data -> 'tags', '[]'::jsonb),
      'run_at',         to_char(job.run_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
      'time',           to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
      'job_class',
        CASE job.job_class
          WHEN 'ActiveJob::QueueAdapters::QueAdapter::JobWrapper'
            THEN coalesce(job.args -> 0 ->> 'job_class', job.job_class)
          ELSE job.job_class
        END,
      'previous_state', previous_state,
      'current_state',  current_state
    )::text
  );

  RETURN NULL;
END
$$;

CREATE TRIGGER que_state_notify
  AFTER INSERT OR UPDATE OR DELETE ON que_jobs
  FOR EACH ROW
  EXECUTE FUNCTION que_state_notify();
