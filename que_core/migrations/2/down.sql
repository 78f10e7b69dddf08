-- Back to version 1: the default priority was 1.

ALTER TABLE que_jobs ALTER COLUMN priority SET DEFAULT 1;
