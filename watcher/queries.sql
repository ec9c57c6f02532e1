-- name: claim_due_jobs
-- Uses jobs_enqueue_at_active: the cost depends on the jobs due now, not on the table size.
SELECT job_id, tenant, spec, version, created_at, enqueue_at, planned_count
FROM jobs
WHERE state = 'active' AND enqueue_at IS NOT NULL AND enqueue_at < $1
  -- A job with max_runs firings planned waits until one is skipped for good (or it completes).
  AND (spec ->> 'max_runs' IS NULL OR planned_count < (spec ->> 'max_runs')::bigint)
ORDER BY enqueue_at
LIMIT $2
FOR UPDATE SKIP LOCKED

-- name: advance_cursors
UPDATE jobs AS j
SET enqueue_at = c.cursor, planned_count = j.planned_count + c.planned
FROM unnest($1::text[], $2::timestamptz[], $3::int[]) AS c(job_id, cursor, planned)
WHERE j.job_id = c.job_id

-- name: reload_everything
-- Redis lost its data: every active job's pending firings are loaded again from Postgres.
UPDATE jobs SET enqueue_at = next_run_at
WHERE state = 'active' AND next_run_at IS NOT NULL
  AND (enqueue_at IS NULL OR enqueue_at > next_run_at)

-- name: pending_retries
-- Failed attempts with another due (ADR 0014): re-created in the due-set by a rebuild. Uses the
-- partial index job_runs_pending_retries: its size is the retries waiting right now.
SELECT r.job_id, r.scheduled_at, r.attempt, r.retry_at, j.version, j.tenant, j.spec
FROM job_runs AS r JOIN jobs AS j ON j.job_id = r.job_id
WHERE NOT r.final AND r.retry_at IS NOT NULL AND r.status IN ('failed', 'timed_out')
  AND j.state = 'active'

-- name: due_set_state
SELECT redis_run_id FROM due_set_state

-- name: record_due_set_state
INSERT INTO due_set_state (redis_run_id, rebuilt_at) VALUES ($1, now())
ON CONFLICT (id) DO UPDATE SET redis_run_id = EXCLUDED.redis_run_id, rebuilt_at = now()
