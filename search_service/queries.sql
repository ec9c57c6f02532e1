-- name: get_job
SELECT job_id, tenant, spec, state, version, next_run_at, run_count, failure_count,
       last_run_id, last_run_status, last_run_at, created_at, updated_at
FROM jobs WHERE job_id = $1 AND tenant = $2

-- name: latest_run
SELECT * FROM job_runs WHERE job_id = $1 AND tenant = $2
ORDER BY scheduled_at DESC, run_id DESC LIMIT 1

-- name: run_by_id
-- GET /runs/<run_id>: the primary key (run_id, scheduled_at) per partition; another tenant's
-- run is not found.
SELECT * FROM job_runs WHERE run_id = $1 AND tenant = $2
ORDER BY scheduled_at DESC LIMIT 1

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

-- name: list_jobs_created_desc
-- The job listings below (four sorts, two of them with a variant for label filters) differ only
-- in their sort (ORDER BY and keyset condition) and shape; their filters are the same text,
-- kept in step by tests/unit/test_search_queries.py.
-- $1 tenant, $2 state, $3 name, $4 q as an ILIKE pattern, $5 labels as JSON text,
-- $6 schedule_type, $7 target_type, $8 next_run_before, $9 next_run_after,
-- $10 created_after, $11 created_before, $12/$13 sort key and job_id of the previous page's
-- last row, $14 limit, $15 q when it has no trigram (then $4 is NULL; see below).
-- A NULL parameter switches its filter off; queries run with bound values (custom plans), so
-- the planner folds those conditions away and sees only the filters in use.
-- next_run_at is compared as COALESCE(next_run_at, 'infinity') to match jobs_tenant_next_run.
-- q without three letters or digits in a row has no trigram: jobs_name_trgm would return every
-- row for a recheck, so such a q is tested with strpos, which no index serves, and the planner
-- filters the tenant's rows in sort order instead.
SELECT job_id, tenant, spec, state, version, next_run_at, run_count, failure_count,
       last_run_id, last_run_status, last_run_at, created_at, updated_at, name
FROM jobs
WHERE tenant = $1
  AND ($2::text IS NULL OR state = $2)
  AND ($3::text IS NULL OR name = $3)
  AND ($4::text IS NULL OR name ILIKE $4)
  AND ($15::text IS NULL OR strpos(lower(name), lower($15)) > 0)
  AND ($5::text IS NULL OR labels @> $5::jsonb)
  AND ($6::text IS NULL OR schedule_type = $6)
  AND ($7::text IS NULL OR target_type = $7)
  AND ($8::timestamptz IS NULL OR COALESCE(next_run_at, 'infinity'::timestamptz) < $8)
  AND ($9::timestamptz IS NULL OR (COALESCE(next_run_at, 'infinity'::timestamptz) > $9
                                   AND COALESCE(next_run_at, 'infinity'::timestamptz) < 'infinity'))
  AND ($10::timestamptz IS NULL OR created_at > $10)
  AND ($11::timestamptz IS NULL OR created_at < $11)
  AND ($12::timestamptz IS NULL OR (created_at, job_id) < ($12, $13::text))
ORDER BY created_at DESC, job_id DESC
LIMIT $14

-- name: list_jobs_created_desc_labelled
-- The created_at listings when a label filter is given (listing.jobs_statement): the page's
-- ids first, then those rows. With state and label filters only, the ids come from an
-- index-only scan of jobs_tenant_(state_)created, which carry labels (migration 0013, ADR 0046),
-- so the rows the label rejects are never read from the heap. Without a label the plain listing
-- above is cheaper: the key lookups of the second step cost ~0.2 ms a page.
SELECT j.job_id, j.tenant, j.spec, j.state, j.version, j.next_run_at, j.run_count,
       j.failure_count, j.last_run_id, j.last_run_status, j.last_run_at, j.created_at,
       j.updated_at, j.name
FROM (SELECT job_id, created_at FROM jobs
WHERE tenant = $1
  AND ($2::text IS NULL OR state = $2)
  AND ($3::text IS NULL OR name = $3)
  AND ($4::text IS NULL OR name ILIKE $4)
  AND ($15::text IS NULL OR strpos(lower(name), lower($15)) > 0)
  AND ($5::text IS NULL OR labels @> $5::jsonb)
  AND ($6::text IS NULL OR schedule_type = $6)
  AND ($7::text IS NULL OR target_type = $7)
  AND ($8::timestamptz IS NULL OR COALESCE(next_run_at, 'infinity'::timestamptz) < $8)
  AND ($9::timestamptz IS NULL OR (COALESCE(next_run_at, 'infinity'::timestamptz) > $9
                                   AND COALESCE(next_run_at, 'infinity'::timestamptz) < 'infinity'))
  AND ($10::timestamptz IS NULL OR created_at > $10)
  AND ($11::timestamptz IS NULL OR created_at < $11)
  AND ($12::timestamptz IS NULL OR (created_at, job_id) < ($12, $13::text))
ORDER BY created_at DESC, job_id DESC
LIMIT $14) AS page
JOIN jobs j USING (job_id)
ORDER BY page.created_at DESC, page.job_id DESC

-- name: list_jobs_created_asc
SELECT job_id, tenant, spec, state, version, next_run_at, run_count, failure_count,
       last_run_id, last_run_status, last_run_at, created_at, updated_at, name
FROM jobs
WHERE tenant = $1
  AND ($2::text IS NULL OR state = $2)
  AND ($3::text IS NULL OR name = $3)
  AND ($4::text IS NULL OR name ILIKE $4)
  AND ($15::text IS NULL OR strpos(lower(name), lower($15)) > 0)
  AND ($5::text IS NULL OR labels @> $5::jsonb)
  AND ($6::text IS NULL OR schedule_type = $6)
  AND ($7::text IS NULL OR target_type = $7)
  AND ($8::timestamptz IS NULL OR COALESCE(next_run_at, 'infinity'::timestamptz) < $8)
  AND ($9::timestamptz IS NULL OR (COALESCE(next_run_at, 'infinity'::timestamptz) > $9
                                   AND COALESCE(next_run_at, 'infinity'::timestamptz) < 'infinity'))
  AND ($10::timestamptz IS NULL OR created_at > $10)
  AND ($11::timestamptz IS NULL OR created_at < $11)
  AND ($12::timestamptz IS NULL OR (created_at, job_id) > ($12, $13::text))
ORDER BY created_at ASC, job_id ASC
LIMIT $14

-- name: list_jobs_created_asc_labelled
SELECT j.job_id, j.tenant, j.spec, j.state, j.version, j.next_run_at, j.run_count,
       j.failure_count, j.last_run_id, j.last_run_status, j.last_run_at, j.created_at,
       j.updated_at, j.name
FROM (SELECT job_id, created_at FROM jobs
WHERE tenant = $1
  AND ($2::text IS NULL OR state = $2)
  AND ($3::text IS NULL OR name = $3)
  AND ($4::text IS NULL OR name ILIKE $4)
  AND ($15::text IS NULL OR strpos(lower(name), lower($15)) > 0)
  AND ($5::text IS NULL OR labels @> $5::jsonb)
  AND ($6::text IS NULL OR schedule_type = $6)
  AND ($7::text IS NULL OR target_type = $7)
  AND ($8::timestamptz IS NULL OR COALESCE(next_run_at, 'infinity'::timestamptz) < $8)
  AND ($9::timestamptz IS NULL OR (COALESCE(next_run_at, 'infinity'::timestamptz) > $9
                                   AND COALESCE(next_run_at, 'infinity'::timestamptz) < 'infinity'))
  AND ($10::timestamptz IS NULL OR created_at > $10)
  AND ($11::timestamptz IS NULL OR created_at < $11)
  AND ($12::timestamptz IS NULL OR (created_at, job_id) > ($12, $13::text))
ORDER BY created_at ASC, job_id ASC
LIMIT $14) AS page
JOIN jobs j USING (job_id)
ORDER BY page.created_at ASC, page.job_id ASC

-- name: list_jobs_next_run_asc
-- Soonest next run first; jobs without one (completed, cancelled) last.
SELECT job_id, tenant, spec, state, version, next_run_at, run_count, failure_count,
       last_run_id, last_run_status, last_run_at, created_at, updated_at, name
FROM jobs
WHERE tenant = $1
  AND ($2::text IS NULL OR state = $2)
  AND ($3::text IS NULL OR name = $3)
  AND ($4::text IS NULL OR name ILIKE $4)
  AND ($15::text IS NULL OR strpos(lower(name), lower($15)) > 0)
  AND ($5::text IS NULL OR labels @> $5::jsonb)
  AND ($6::text IS NULL OR schedule_type = $6)
  AND ($7::text IS NULL OR target_type = $7)
  AND ($8::timestamptz IS NULL OR COALESCE(next_run_at, 'infinity'::timestamptz) < $8)
  AND ($9::timestamptz IS NULL OR (COALESCE(next_run_at, 'infinity'::timestamptz) > $9
                                   AND COALESCE(next_run_at, 'infinity'::timestamptz) < 'infinity'))
  AND ($10::timestamptz IS NULL OR created_at > $10)
  AND ($11::timestamptz IS NULL OR created_at < $11)
  AND ($12::timestamptz IS NULL
       OR (COALESCE(next_run_at, 'infinity'::timestamptz), job_id) > ($12, $13::text))
ORDER BY COALESCE(next_run_at, 'infinity'::timestamptz) ASC, job_id ASC
LIMIT $14

-- name: list_jobs_name_asc
SELECT job_id, tenant, spec, state, version, next_run_at, run_count, failure_count,
       last_run_id, last_run_status, last_run_at, created_at, updated_at, name
FROM jobs
WHERE tenant = $1
  AND ($2::text IS NULL OR state = $2)
  AND ($3::text IS NULL OR name = $3)
  AND ($4::text IS NULL OR name ILIKE $4)
  AND ($15::text IS NULL OR strpos(lower(name), lower($15)) > 0)
  AND ($5::text IS NULL OR labels @> $5::jsonb)
  AND ($6::text IS NULL OR schedule_type = $6)
  AND ($7::text IS NULL OR target_type = $7)
  AND ($8::timestamptz IS NULL OR COALESCE(next_run_at, 'infinity'::timestamptz) < $8)
  AND ($9::timestamptz IS NULL OR (COALESCE(next_run_at, 'infinity'::timestamptz) > $9
                                   AND COALESCE(next_run_at, 'infinity'::timestamptz) < 'infinity'))
  AND ($10::timestamptz IS NULL OR created_at > $10)
  AND ($11::timestamptz IS NULL OR created_at < $11)
  AND ($12::text IS NULL OR (name, job_id) > ($12, $13::text))
ORDER BY name ASC, job_id ASC
LIMIT $14

-- name: list_runs
-- Newest change first across the tenant's jobs; $5/$6 are the previous page's last row.
SELECT * FROM job_runs
WHERE tenant = $1
  AND ($2::text IS NULL OR status = $2)
  AND ($3::text IS NULL OR job_id = $3)
  AND ($4::timestamptz IS NULL OR modified_at >= $4)
  AND ($5::timestamptz IS NULL OR (modified_at, run_id) < ($5, $6::text))
ORDER BY modified_at DESC, run_id DESC
LIMIT $7

-- name: job_counts
SELECT state, count(*) AS n FROM jobs WHERE tenant = $1 GROUP BY state

-- name: run_counts
-- Runs whose status last changed since $3 (a day ago), by status; last_hour since $2.
SELECT status,
       count(*) FILTER (WHERE modified_at >= $2) AS last_hour,
       count(*) AS last_day
FROM job_runs
WHERE tenant = $1 AND modified_at >= $3
GROUP BY status

-- name: run_metrics
-- Success rate over final outcomes (a failed attempt that will be retried is not one yet;
-- cancelled and skipped runs are neither success nor failure); lateness and duration over every
-- run that changed in the last day ($3), as for run_counts.
SELECT count(*) FILTER (WHERE modified_at >= $2 AND final AND status = 'succeeded') AS ok_hour,
       count(*) FILTER (WHERE modified_at >= $2 AND final
                          AND status IN ('succeeded', 'failed', 'timed_out')) AS done_hour,
       count(*) FILTER (WHERE final AND status = 'succeeded') AS ok_day,
       count(*) FILTER (WHERE final AND status IN ('succeeded', 'failed', 'timed_out')) AS done_day,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY lateness_ms) AS lateness_p50,
       percentile_cont(0.99) WITHIN GROUP (ORDER BY lateness_ms) AS lateness_p99,
       avg(duration_ms)::float8 AS mean_duration_ms
FROM job_runs
WHERE tenant = $1 AND modified_at >= $3

-- name: list_alerts
-- A tenant's alerts, newest first (ADR 0033); $4/$5 are the previous page's last row.
-- Served by alerts_by_tenant, or alerts_by_tenant_kind when a kind is given.
SELECT alert_id, job_id, run_id, kind, at, detail FROM alerts
WHERE tenant = $1
  AND ($2::text IS NULL OR kind = $2)
  AND ($3::timestamptz IS NULL OR at >= $3)
  AND ($4::timestamptz IS NULL OR (at, alert_id) < ($4, $5::text))
ORDER BY at DESC, alert_id DESC
LIMIT $6

-- name: run_output
-- The run a stored output belongs to (GET /runs/<run_id>/output): one index lookup per
-- partition on the primary key (run_id, scheduled_at); another tenant's run is not found.
SELECT run_id, job_id, tenant, attempt, status, output_bytes, steps FROM job_runs
WHERE run_id = $1 AND tenant = $2
ORDER BY scheduled_at DESC LIMIT 1
