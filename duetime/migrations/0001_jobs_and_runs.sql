-- The jobs a tenant created, and every run of them.

CREATE TABLE jobs (
    job_id          text PRIMARY KEY,
    tenant          text        NOT NULL,
    name            text        NOT NULL,
    spec            jsonb       NOT NULL,
    schedule_type   text        NOT NULL,
    target_type     text        NOT NULL,
    state           text        NOT NULL CHECK (state IN ('active', 'paused', 'cancelled', 'completed')),
    version         integer     NOT NULL DEFAULT 1,
    priority        smallint    NOT NULL DEFAULT 5,
    labels          jsonb       NOT NULL DEFAULT '{}'::jsonb,
    -- next_run_at: the next firing not yet run, as users see it.
    next_run_at     timestamptz,
    -- enqueue_at: the next firing not yet placed in the Redis due-set (the loader's cursor).
    enqueue_at      timestamptz,
    run_count       bigint      NOT NULL DEFAULT 0,
    failure_count   bigint      NOT NULL DEFAULT 0,
    last_run_id     text,
    last_run_status text,
    last_run_at     timestamptz,
    created_command text        NOT NULL,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL
);

-- The watcher's only query: active jobs whose next firing is not loaded yet, by time.
CREATE INDEX jobs_enqueue_at_active ON jobs (enqueue_at) WHERE state = 'active' AND enqueue_at IS NOT NULL;
CREATE INDEX jobs_next_run_at_active ON jobs (next_run_at) WHERE state = 'active';
CREATE INDEX jobs_tenant_created ON jobs (tenant, created_at DESC, job_id DESC);

CREATE TABLE job_runs (
    run_id            text        NOT NULL,
    job_id            text        NOT NULL,
    tenant            text        NOT NULL,
    scheduled_at      timestamptz NOT NULL,
    attempt           integer     NOT NULL,
    status            text        NOT NULL,
    queued_at         timestamptz,
    started_at        timestamptz,
    finished_at       timestamptz,
    modified_at       timestamptz NOT NULL,
    executor_id       text,
    lateness_ms       integer,
    duration_ms       integer,
    http_status       integer,
    error             text,
    reason            text,
    response_excerpt  text,
    final             boolean     NOT NULL DEFAULT true,
    PRIMARY KEY (run_id, scheduled_at)
) PARTITION BY RANGE (scheduled_at);

-- Runs outside every monthly partition land here rather than failing the writer.
CREATE TABLE job_runs_default PARTITION OF job_runs DEFAULT;

CREATE INDEX job_runs_job_scheduled ON job_runs (job_id, scheduled_at DESC, run_id DESC);
CREATE INDEX job_runs_tenant_modified ON job_runs (tenant, modified_at DESC, run_id DESC);
CREATE INDEX job_runs_status_modified ON job_runs (status, modified_at) WHERE status IN ('queued', 'running');

-- A run's status only moves forward: queued < running < any terminal status.
CREATE FUNCTION run_status_rank(status text) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE status WHEN 'queued' THEN 1 WHEN 'running' THEN 2 ELSE 3 END
$$;

-- Monthly partitions for job_runs from `first` for `months` months; safe to call repeatedly.
CREATE FUNCTION ensure_job_runs_partitions(first date, months integer) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    m date;
BEGIN
    FOR i IN 0 .. months - 1 LOOP
        m := date_trunc('month', first)::date + make_interval(months => i);
        EXECUTE format(
            'CREATE TABLE IF NOT EXISTS %I PARTITION OF job_runs FOR VALUES FROM (%L) TO (%L)',
            'job_runs_' || to_char(m, 'YYYYMM'), m, (m + interval '1 month')::date);
    END LOOP;
END
$$;

SELECT ensure_job_runs_partitions((now() - interval '1 month')::date, 4);
