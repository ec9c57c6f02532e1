-- name: get_job
SELECT job_id, tenant, spec, state, version, next_run_at, run_count, failure_count,
       last_run_id, last_run_status, last_run_at, created_at, updated_at
FROM jobs WHERE job_id = $1 AND tenant = $2

-- name: latest_run
SELECT * FROM job_runs WHERE job_id = $1 AND tenant = $2
ORDER BY scheduled_at DESC, run_id DESC LIMIT 1

-- name: job_runs_page
-- Keyset pagination, newest first; $4/$5 are the last row of the previous page (or NULL).
SELECT * FROM job_runs
WHERE job_id = $1 AND tenant = $2
  AND ($3::text IS NULL OR status = $3)
  AND ($4::timestamptz IS NULL OR (scheduled_at, run_id) < ($4, $5))
ORDER BY scheduled_at DESC, run_id DESC
LIMIT $6

-- name: timer
SELECT job_id, state, next_run_at, spec FROM jobs WHERE job_id = $1 AND tenant = $2
