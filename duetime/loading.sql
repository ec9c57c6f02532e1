-- name: record_skipped
-- Firings of a created, edited, resumed or loaded job that fell inside an outage and are not
-- made because of the catch-up policy (ADR 0011): final `skipped` runs, one row per firing.
INSERT INTO job_runs (run_id, job_id, tenant, scheduled_at, attempt, status, modified_at,
                      reason, final)
SELECT run_id, job_id, tenant, scheduled_at, 1, 'skipped', now(), 'catchup', true
FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[])
     AS s(run_id, job_id, tenant, scheduled_at)
ON CONFLICT DO NOTHING
