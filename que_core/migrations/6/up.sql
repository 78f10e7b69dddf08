-- que-core schema version 6 (Que 2.0): keyword arguments get their own
-- column; the poll index that leads with job_schema_version replaces the old
-- one (and takes its name); every job row must state its row format.

ALTER TABLE que_jobs ADD COLUMN kwargs jsonb NOT NULL DEFAULT '{}'::jsonb;
CREATE INDEX que_jobs_kwargs_gin_idx ON que_jobs USING gin (kwargs jsonb_path_ops);

DROP INDEX que_poll_idx;
ALTER INDEX que_poll_idx_with_job_schema_version RENAME TO que_poll_idx;

-- Only a client that wrote NULL explicitly leaves a row without a format;
-- the version 5 default says what such a row is.
UPDATE que_jobs SET job_schema_version = 1 WHERE job_schema_version IS NULL;

ALTER TABLE que_jobs
  ALTER COLUMN job_schema_version DROP DEFAULT,
  ALTER COLUMN job_schema_version SET NOT NULL;
