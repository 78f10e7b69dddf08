-- Back to version 0: no que objects at all. The job_id sequence belongs to
-- the table and goes with it.

DROP TABLE que_jobs;
