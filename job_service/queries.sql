-- name: job_owner_and_spec
SELECT tenant, spec FROM jobs WHERE job_id = $1

-- name: jobs_named
-- The tenant's jobs that `POST /jobs:apply` may update: by name, any state but cancelled
-- (index jobs_tenant_name).
SELECT job_id, name, spec FROM jobs
WHERE tenant = $1 AND name = ANY($2::text[]) AND state <> 'cancelled'
ORDER BY name, job_id

-- name: existing_job_ids
-- Ids taken, but not by the caller's live jobs of the names being applied: one the writer
-- stored since the apply looked for it by name is the job this apply names again.
SELECT job_id FROM jobs WHERE job_id = ANY($1::text[])
  AND NOT (tenant = $2 AND state <> 'cancelled' AND name = ANY($3::text[]))
