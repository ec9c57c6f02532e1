-- The job service's quota snapshot (job_service/quotas.sql, docs/quotas.md) sums the peak firing
-- rate of a tenant's active recurring jobs every few seconds: this index reads only those, not
-- the tenant's (possibly millions of) one-shot jobs. Its upkeep touches recurring jobs only.
CREATE INDEX jobs_tenant_recurring_active ON jobs (tenant)
    WHERE state = 'active' AND schedule_type IN ('interval', 'cron');
