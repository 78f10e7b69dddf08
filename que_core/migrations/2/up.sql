-- que-core schema version 2: the default priority becomes 100, so that jobs
-- can be made more urgent than the default without negative priorities.

ALTER TABLE que_jobs ALTER COLUMN priority SET DEFAULT 100;
