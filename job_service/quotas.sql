-- Queries of the quota snapshot (job_service/quotas.py): each runs at most once per tenant per
-- refresh interval, in the background, never per request.

-- name: tenant_jobs
-- Jobs that count against the active-jobs quota: active and paused (a paused job can resume).
-- Index-only on jobs_tenant_state_created.
SELECT count(*) FROM jobs WHERE tenant = $1 AND state IN ('active', 'paused')

-- name: tenant_recurring_schedules
-- The tenant's firing schedules, grouped so each distinct one is rated once
-- (jobs_tenant_recurring_active reads recurring jobs only).
SELECT schedule_type, spec -> 'schedule' ->> 'every_seconds' AS every_seconds,
       spec -> 'schedule' ->> 'expression' AS expression, count(*) AS n
FROM jobs
WHERE tenant = $1 AND state = 'active' AND schedule_type IN ('interval', 'cron')
GROUP BY 1, 2, 3

-- name: job_state_and_spec
SELECT state, spec FROM jobs WHERE job_id = $1 AND tenant = $2
