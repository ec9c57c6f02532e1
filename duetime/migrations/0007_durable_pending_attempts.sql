-- Issue 6, defect 10 (ADR 0014): Postgres is the durable record of every pending attempt, Redis a
-- rebuildable index of it.
--
-- A failed attempt with another to come records when that retry is due; a rebuild of the
-- due-set (Redis lost some or all of its data) re-creates the retry from here.
ALTER TABLE job_runs ADD COLUMN retry_at timestamptz;
-- The rebuild's only query on job_runs: the few runs waiting for a retry right now.
CREATE INDEX job_runs_pending_retries ON job_runs (retry_at)
    WHERE NOT final AND retry_at IS NOT NULL AND status IN ('failed', 'timed_out');

-- Which Redis server (INFO run_id) the due-set was last known complete on. Another run id means
-- Redis restarted or failed over — an AOF tail or an unreplicated write may be gone — and the
-- watcher rebuilds the due-set before trusting it again.
CREATE TABLE due_set_state (
    id            boolean     PRIMARY KEY DEFAULT true CHECK (id),
    redis_run_id  text        NOT NULL,
    rebuilt_at    timestamptz NOT NULL
);
