-- name: job_owner_and_spec
SELECT tenant, spec FROM jobs WHERE job_id = $1
