-- Issue 10 (ADR 0033): what went wrong with a tenant's jobs, as GET /alerts lists it and
-- the notification webhooks (on_failure, on_late, on_recovered) deliver it. The writer inserts
-- a row in the transaction that applies the run status behind it, so an alert exists exactly
-- when its status does; the id is derived from (kind, run or command), so a replayed status
-- inserts nothing twice.
CREATE TABLE alerts (
    alert_id  text        PRIMARY KEY,
    tenant    text        NOT NULL,
    job_id    text,
    run_id    text,
    kind      text        NOT NULL CHECK (kind IN ('failure', 'late', 'recovered', 'dlq')),
    at        timestamptz NOT NULL,
    detail    jsonb       NOT NULL DEFAULT '{}'::jsonb,
    -- Set once the alert is on duetime.alerts (the writer's outbox: writer/alerts.py).
    published_at timestamptz
);
-- GET /alerts: a tenant's newest first, keyset on (at, alert_id), with or without a kind.
CREATE INDEX alerts_by_tenant ON alerts (tenant, at DESC, alert_id DESC);
CREATE INDEX alerts_by_tenant_kind ON alerts (tenant, kind, at DESC, alert_id DESC);
-- The outbox: alerts not on Kafka yet (a handful at any moment).
CREATE INDEX alerts_unpublished ON alerts (at) WHERE published_at IS NULL;
-- Retention (the writer's hourly maintenance) deletes by age.
CREATE INDEX alerts_at ON alerts (at);
