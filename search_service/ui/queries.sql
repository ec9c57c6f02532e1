-- The dashboard's aggregates (ADR 0029). Like every read query, each is scoped to the caller's
-- tenant ($1); listings and single jobs reuse search_service/queries.sql.

-- name: failures
-- Failed and timed-out attempts whose status changed since $2, by job and error; the newest run
-- of each group is where the dashboard links to.
SELECT r.job_id, j.name, r.status, COALESCE(r.error, '') AS error, count(*) AS n,
       max(r.modified_at) AS last_at,
       (array_agg(r.run_id ORDER BY r.modified_at DESC, r.run_id DESC))[1] AS last_run_id
FROM job_runs r
LEFT JOIN jobs j ON j.job_id = r.job_id AND j.tenant = r.tenant
WHERE r.tenant = $1 AND r.modified_at >= $2 AND r.status IN ('failed', 'timed_out')
GROUP BY r.job_id, j.name, r.status, COALESCE(r.error, '')
ORDER BY n DESC, last_at DESC
LIMIT 200

-- name: lateness_histogram
-- Runs that changed since $2 by lateness bucket: width_bucket over the bounds in $3 (ms),
-- 0 below the first bound, len($3) at or above the last.
SELECT width_bucket(lateness_ms::float8, $3::float8[]) AS bucket, count(*) AS n
FROM job_runs
WHERE tenant = $1 AND modified_at >= $2 AND lateness_ms IS NOT NULL
GROUP BY bucket

-- name: firings_per_minute
-- Runs due since $2, per minute of their due instant, split into failures and the rest.
-- modified_at >= scheduled_at, so its bound only lets the index narrow the scan.
SELECT date_bin('1 minute', scheduled_at, $2) AS minute,
       count(*) FILTER (WHERE status IN ('failed', 'timed_out')) AS failed,
       count(*) AS total
FROM job_runs
WHERE tenant = $1 AND modified_at >= $2 AND scheduled_at >= $2 AND status <> 'queued'
GROUP BY minute
