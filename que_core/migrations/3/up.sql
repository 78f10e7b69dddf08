-- que-core schema version 3: named queues ('' is the default queue) and a
-- smallint priority. The queue leads the primary key so that each queue is
-- worked through its own range of the index.

ALTER TABLE que_jobs
  DROP CONSTRAINT que_jobs_pkey,
  ALTER COLUMN priority TYPE smallint,
  ADD COLUMN queue text NOT NULL DEFAULT '',
  ADD CONSTRAINT que_jobs_pkey PRIMARY KEY (queue, priority, run_at, job_id);
