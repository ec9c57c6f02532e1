-- Steps runs (issue 9, ADR 0032) record each step's name, status, exit code and duration: a
-- small array (at most 100 steps), read with the run, never searched by itself.
ALTER TABLE job_runs ADD COLUMN steps jsonb;
