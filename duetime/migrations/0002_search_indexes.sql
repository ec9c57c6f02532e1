-- Indexes for the read side's listings (search_service/queries.sql; ADR 0005). Every search
-- query is scoped to one tenant, so the b-tree indexes lead with tenant and then give either the
-- filter or the sort order; the two GIN indexes answer substring and label searches.
CREATE EXTENSION IF NOT EXISTS pg_trgm;

-- state=, and job counts by state (index-only).
CREATE INDEX jobs_tenant_state_created ON jobs (tenant, state, created_at DESC, job_id DESC);
-- name= and sort=name_asc.
CREATE INDEX jobs_tenant_name ON jobs (tenant, name, job_id);
-- next_run_before/after and sort=next_run_at_asc; jobs with no next run sort last, at infinity,
-- so one keyset condition covers them (queries must use this exact expression).
CREATE INDEX jobs_tenant_next_run ON jobs (tenant, (COALESCE(next_run_at, 'infinity'::timestamptz)), job_id);
-- q= (case-insensitive substring, ILIKE '%...%'): trigrams.
CREATE INDEX jobs_name_trgm ON jobs USING gin (name gin_trgm_ops);
-- label=k:v (labels @> '{"k": "v"}').
CREATE INDEX jobs_labels ON jobs USING gin (labels jsonb_path_ops);

-- GET /runs?status=: failed runs are rare among recent ones, so filtering the tenant's
-- newest-first index would read far more rows than it returns.
CREATE INDEX job_runs_tenant_status_modified ON job_runs (tenant, status, modified_at DESC, run_id DESC);
