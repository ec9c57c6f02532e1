-- Every value the schemas admit fits its column (ARCHITECTURE rule 8): a run of a one-shot job
-- whose `at` lies years in the past is ~8.5e11 ms late, beyond integer. Lateness and duration
-- are milliseconds of any 64-bit size; attempt and http_status stay integer because the run
-- status schema bounds them to it.
ALTER TABLE job_runs
    ALTER COLUMN lateness_ms TYPE bigint,
    ALTER COLUMN duration_ms TYPE bigint;
