-- name: claim_due_jobs
-- Uses jobs_enqueue_at_active: the cost depends on the jobs due now, not on the table size.
SELECT job_id, tenant, spec, version, created_at, enqueue_at
FROM jobs
WHERE state = 'active' AND enqueue_at IS NOT NULL AND enqueue_at < $1
ORDER BY enqueue_at
LIMIT $2
FOR UPDATE SKIP LOCKED

-- name: advance_cursors
UPDATE jobs AS j
SET enqueue_at = c.cursor
FROM unnest($1::text[], $2::timestamptz[]) AS c(job_id, cursor)
WHERE j.job_id = c.job_id

-- name: reload_everything
-- Redis lost its data: every active job's pending firings are loaded again from Postgres.
UPDATE jobs SET enqueue_at = next_run_at
WHERE state = 'active' AND next_run_at IS NOT NULL
  AND (enqueue_at IS NULL OR enqueue_at > next_run_at)
