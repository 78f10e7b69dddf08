-- Back to version 3 (the Que 0.x layout).
--
-- Version 3 has no notion of a finished or expired job: such rows would be
-- worked again, so they are deleted. Error message and backtrace are joined
-- into one text again; data (and its tags) is lost.

DROP TRIGGER que_state_notify ON que_jobs;
DROP FUNCTION que_state_notify();
DROP FUNCTION que_determine_job_state(que_jobs);
DROP TRIGGER que_job_notify ON que_jobs;
DROP FUNCTION que_job_notify();

DROP TABLE que_lockers;
DROP TABLE que_values;

DROP INDEX que_poll_idx;
DROP INDEX que_jobs_data_gin_idx;
DROP INDEX que_jobs_args_gin_idx;

DELETE FROM que_jobs WHERE finished_at IS NOT NULL OR expired_at IS NOT NULL;

ALTER TABLE que_jobs
  DROP CONSTRAINT que_jobs_pkey,
  DROP CONSTRAINT error_length,
  DROP CONSTRAINT job_class_length,
  DROP CONSTRAINT queue_length,
  DROP CONSTRAINT valid_args,
  DROP CONSTRAINT valid_data;

DROP FUNCTION que_validate_tags(jsonb);

ALTER TABLE que_jobs RENAME COLUMN args TO new_args;
ALTER TABLE que_jobs ADD COLUMN args json;

UPDATE que_jobs
SET
  args = new_args::json,
  queue = CASE WHEN queue = 'default' THEN '' ELSE queue END,
  last_error_message =
    CASE
      WHEN last_error_backtrace IS NULL THEN last_error_message
      ELSE coalesce(last_error_message, '') || E'\n' || last_error_backtrace
    END;

ALTER TABLE que_jobs
  DROP COLUMN new_args,
  DROP COLUMN data,
  DROP COLUMN last_error_backtrace,
  DROP COLUMN finished_at,
  DROP COLUMN expired_at,
  ALTER COLUMN args SET DEFAULT '[]'::json,
  ALTER COLUMN args SET NOT NULL,
  ALTER COLUMN queue SET DEFAULT '';

ALTER TABLE que_jobs RENAME COLUMN last_error_message TO last_error;
ALTER TABLE que_jobs RENAME COLUMN id TO job_id;
ALTER SEQUENCE que_jobs_id_seq RENAME TO que_jobs_job_id_seq;

ALTER TABLE que_jobs
  ADD CONSTRAINT que_jobs_pkey PRIMARY KEY (queue, priority, run_at, job_id);

ALTER TABLE que_jobs RESET (fillfactor);
