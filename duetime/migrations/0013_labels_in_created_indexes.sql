-- A label filter on the newest-first listings (GET /jobs?label=..., alone or with state=) reads
-- each candidate's labels from the index instead of its heap row (ADR 0046): the listings find
-- a page's ids with an index-only scan, then fetch those rows. The key columns are unchanged,
-- so every other use of these indexes (sorts, keyset pages, quota counts) is as before.
CREATE INDEX jobs_tenant_created_labels
    ON jobs (tenant, created_at DESC, job_id DESC) INCLUDE (labels);
DROP INDEX jobs_tenant_created;
ALTER INDEX jobs_tenant_created_labels RENAME TO jobs_tenant_created;

CREATE INDEX jobs_tenant_state_created_labels
    ON jobs (tenant, state, created_at DESC, job_id DESC) INCLUDE (labels);
DROP INDEX jobs_tenant_state_created;
ALTER INDEX jobs_tenant_state_created_labels RENAME TO jobs_tenant_state_created;
