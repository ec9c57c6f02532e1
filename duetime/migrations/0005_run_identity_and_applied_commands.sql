-- Issue 6, defects 3 and 8 (ADR 0010).
--
-- Every command applies at most once: a replay (same command_id, e.g. after a writer crash
-- before its Kafka offset was committed) finds its id here and changes nothing. Rows are
-- written in the command's own transaction, so a rolled-back command is not remembered.
CREATE TABLE applied_commands (
    command_id  text        PRIMARY KEY,
    job_id      text        NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
);
-- Replays come from the uncommitted tail of the commands topic: old rows can be expired.
CREATE INDEX applied_commands_applied_at ON applied_commands (applied_at);

-- The order a run's statuses move in, now knowing `final`: a `skipped` that is not final
-- (the firing was refused as stale or paused, the run may still fire) ranks between queued
-- and running, so the run's next real status overtakes it; every other status as before.
CREATE FUNCTION run_rank(status text, final boolean) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN status = 'skipped' AND NOT final THEN 3
                WHEN status = 'queued' THEN 2
                WHEN status = 'running' THEN 4
                ELSE 6 END
$$;
