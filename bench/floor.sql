-- The floor pipeline's two tables (bench/floor.py): a job row per create and a run row per
-- firing, with the primary keys and one index the real tables' hot statements need.

-- name: create_tables
CREATE TABLE IF NOT EXISTS bench_floor_jobs (
    job_id text PRIMARY KEY,
    due_ms bigint NOT NULL,
    url text NOT NULL,
    state text NOT NULL DEFAULT 'scheduled'
);
CREATE INDEX IF NOT EXISTS bench_floor_jobs_due ON bench_floor_jobs (due_ms) WHERE state = 'scheduled';
CREATE TABLE IF NOT EXISTS bench_floor_runs (
    run_id text PRIMARY KEY,
    job_id text NOT NULL,
    status text NOT NULL,
    code int
);

-- name: drop_tables
DROP TABLE IF EXISTS bench_floor_jobs, bench_floor_runs;

-- name: insert_jobs
INSERT INTO bench_floor_jobs (job_id, due_ms, url)
SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[])
ON CONFLICT (job_id) DO NOTHING;

-- name: upsert_runs
INSERT INTO bench_floor_runs (run_id, job_id, status, code)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int[])
ON CONFLICT (run_id) DO UPDATE SET status = excluded.status, code = excluded.code;

-- name: complete_jobs
UPDATE bench_floor_jobs SET state = 'completed' WHERE job_id = ANY($1::text[]);

-- name: count_jobs
SELECT count(*) FROM bench_floor_jobs;
