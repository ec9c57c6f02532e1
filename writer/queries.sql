-- name: lock_job
SELECT job_id, tenant, spec, state, version, created_at, enqueue_at, next_run_at, run_count,
       planned_count
FROM jobs WHERE job_id = $1 FOR UPDATE

-- name: insert_job
INSERT INTO jobs (job_id, tenant, name, spec, schedule_type, target_type, state, version,
                  priority, labels, next_run_at, enqueue_at, created_command, created_at, updated_at,
                  planned_count)
VALUES ($1, $2, $3, $4, $5, $6, $7, 1, $8, $9, $10, $11, $12, $13, $13, $14)

-- name: replace_job
UPDATE jobs
SET spec = $2, name = $3, schedule_type = $4, target_type = $5, priority = $6, labels = $7,
    version = version + 1, state = $8, next_run_at = $9, enqueue_at = $10, updated_at = $11,
    -- Firings of the old version still queued are dropped at dispatch: count from what ran.
    -- Those due before the edit are owed and may still end; they are not the plan's (plan_from).
    planned_count = run_count + $12, plan_from = $11
WHERE job_id = $1
RETURNING version

-- name: set_state
UPDATE jobs
SET state = $2, version = version + $3, next_run_at = $4, enqueue_at = $5, updated_at = $6
WHERE job_id = $1
RETURNING version

-- name: upsert_runs
-- One statement per batch; a run's status only moves forward (by attempt, then rank).
INSERT INTO job_runs AS r (run_id, job_id, tenant, scheduled_at, attempt, status, queued_at,
                           started_at, finished_at, modified_at, executor_id, lateness_ms,
                           duration_ms, http_status, error, reason, response_excerpt, final,
                           retry_at, exit_code, signal, output_bytes, output_truncated, steps)
-- Steps come as JSON text ($24): a list inside the list would be a second array dimension.
SELECT u.run_id, u.job_id, u.tenant, u.scheduled_at, u.attempt, u.status, u.queued_at,
       u.started_at, u.finished_at, u.modified_at, u.executor_id, u.lateness_ms, u.duration_ms,
       u.http_status, u.error, u.reason, u.response_excerpt, u.final, u.retry_at, u.exit_code,
       u.signal, u.output_bytes, u.output_truncated, u.steps::jsonb
FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::int[],
            $6::text[], $7::timestamptz[], $8::timestamptz[], $9::timestamptz[],
            $10::timestamptz[], $11::text[], $12::bigint[], $13::bigint[], $14::int[],
            $15::text[], $16::text[], $17::text[], $18::bool[], $19::timestamptz[],
            $20::int[], $21::int[], $22::bigint[], $23::bool[], $24::text[])
     AS u(run_id, job_id, tenant, scheduled_at, attempt, status, queued_at, started_at,
          finished_at, modified_at, executor_id, lateness_ms, duration_ms, http_status, error,
          reason, response_excerpt, final, retry_at, exit_code, signal, output_bytes,
          output_truncated, steps)
ON CONFLICT (run_id, scheduled_at) DO UPDATE SET
    attempt = EXCLUDED.attempt,
    status = EXCLUDED.status,
    queued_at = COALESCE(r.queued_at, EXCLUDED.queued_at),
    started_at = CASE WHEN EXCLUDED.attempt > r.attempt THEN EXCLUDED.started_at
                      ELSE COALESCE(EXCLUDED.started_at, r.started_at) END,
    finished_at = EXCLUDED.finished_at,
    modified_at = EXCLUDED.modified_at,
    executor_id = COALESCE(EXCLUDED.executor_id, r.executor_id),
    lateness_ms = COALESCE(EXCLUDED.lateness_ms, r.lateness_ms),
    duration_ms = EXCLUDED.duration_ms,
    http_status = EXCLUDED.http_status,
    error = EXCLUDED.error,
    reason = EXCLUDED.reason,
    response_excerpt = EXCLUDED.response_excerpt,
    final = EXCLUDED.final,
    retry_at = EXCLUDED.retry_at,
    exit_code = EXCLUDED.exit_code,
    signal = EXCLUDED.signal,
    output_bytes = EXCLUDED.output_bytes,
    output_truncated = EXCLUDED.output_truncated,
    steps = EXCLUDED.steps
WHERE (EXCLUDED.attempt, run_rank(EXCLUDED.status, EXCLUDED.final))
      > (r.attempt, run_rank(r.status, r.final))
RETURNING run_id, job_id, status, attempt, final, scheduled_at

-- name: record_finished_runs
-- Counters and state for jobs whose runs reached their final status in this batch. Only
-- firings made count (run_count, max_runs, a one-shot job's completion); a final `skipped`
-- (catch-up, overlap) was planned but will not fire, so it leaves planned_count. A firing an
-- earlier version owed (due before the plan began, plan_from: a slow call across an edit, or
-- statuses behind commands) is made but not the plan's: it adds to planned_count as it adds to
-- run_count, and its `skipped` leaves the plan as it was.
WITH ended AS (
    SELECT * FROM unnest($7::text[], $8::timestamptz[], $9::bool[])
        AS e(job_id, scheduled_at, made)
), plan AS (
    -- The row as this statement found it: its outcome before this batch, from which a success
    -- is a recovery (ADR 0033), and when its plan began.
    SELECT p.job_id, p.last_run_status AS previous_status, p.last_run_at AS previous_at,
           count(*) FILTER (WHERE e.made AND e.scheduled_at < p.plan_from) AS owed,
           count(*) FILTER (WHERE NOT e.made AND (p.plan_from IS NULL
                                                  OR e.scheduled_at >= p.plan_from)) AS skipped,
           -- The latest firing made that is the plan's (or its one-shot instant itself, which
           -- an owed firing of the unchanged instant is): what completes a one-shot job.
           max(e.scheduled_at) FILTER (WHERE e.made AND (p.plan_from IS NULL
                                                         OR e.scheduled_at >= p.plan_from
                                                         OR e.scheduled_at = p.next_run_at))
               AS plan_last
    FROM ended AS e JOIN jobs AS p ON p.job_id = e.job_id
    GROUP BY p.job_id
)
UPDATE jobs AS j
SET run_count = j.run_count + f.finished,
    failure_count = j.failure_count + f.failed,
    planned_count = GREATEST(j.planned_count - f.skipped, 0) + f.owed,
    -- The last run is the latest instant that ended, not the last to end: a slow call's status
    -- that lands after a later firing's leaves that later one as the job's last run.
    last_run_id = CASE WHEN f.newer THEN f.last_run_id ELSE j.last_run_id END,
    last_run_status = CASE WHEN f.newer THEN f.last_status ELSE j.last_run_status END,
    last_run_at = CASE WHEN f.newer THEN f.last_at ELSE j.last_run_at END,
    -- Completed: a one-shot job fired, max_runs firings were made, or the schedule has no
    -- firing left (nothing more to load) and every loaded firing has finished. A paused job
    -- completes only when the firing of its one-shot instant finished: one made before the
    -- pause took effect whose status came after it (statuses and commands are two topics, and
    -- under a backlog the pause can be applied first). A run-now's firing is not that instant.
    state = CASE WHEN (j.state = 'active' AND ((j.schedule_type IN ('once', 'delay', 'now')
                                                AND f.plan_last >= j.next_run_at)
                       OR (j.spec ->> 'max_runs')::bigint <= j.run_count + f.finished
                       OR (j.enqueue_at IS NULL
                           AND GREATEST(j.planned_count - f.skipped, 0) + f.owed
                               <= j.run_count + f.finished)))
                      OR (j.state = 'paused' AND j.schedule_type IN ('once', 'delay', 'now')
                          AND f.last_at = j.next_run_at)
                 THEN 'completed' ELSE j.state END,
    -- A run-now of a one-shot job before its time does not use up the scheduled firing.
    next_run_at = CASE WHEN j.schedule_type IN ('once', 'delay', 'now')
                            AND f.plan_last >= j.next_run_at THEN NULL
                       ELSE j.next_run_at END,
    updated_at = now()
FROM (SELECT t.*, plan.owed, plan.skipped, plan.previous_status, plan.previous_at,
             plan.plan_last, t.last_at >= coalesce(plan.previous_at, '-infinity') AS newer
      FROM unnest($1::text[], $2::int[], $3::int[], $4::text[], $5::text[], $6::timestamptz[])
          AS t(job_id, finished, failed, last_run_id, last_status, last_at)
      JOIN plan USING (job_id)) AS f
WHERE j.job_id = f.job_id
RETURNING j.job_id, j.state, j.version, j.tenant, f.previous_status, f.previous_at,
          (j.spec ->> 'late_after_seconds')::bigint AS late_after_seconds

-- name: resume_job
-- A new version, so every entry loaded before the pause is dropped and the firings planned now
-- are the only ones pending: planned_count counts them on top of the firings made.
UPDATE jobs
SET state = $2, version = version + 1, next_run_at = $3, enqueue_at = $4, updated_at = $5,
    planned_count = run_count + $6, plan_from = $5
WHERE job_id = $1
RETURNING version

-- name: record_command
-- Remembers a command as applied; returns nothing when it was applied before (a replay).
INSERT INTO applied_commands (command_id, job_id) VALUES ($1, $2)
ON CONFLICT (command_id) DO NOTHING
RETURNING command_id

-- name: recurring_schedules
SELECT job_id, spec, created_at, next_run_at FROM jobs
WHERE job_id = ANY($1::text[]) AND state = 'active' AND schedule_type IN ('interval', 'cron')

-- name: advance_next_run
-- next_run_at moves past a firing once that firing is queued; never backwards.
UPDATE jobs AS j SET next_run_at = c.next_run_at
FROM unnest($1::text[], $2::timestamptz[], $3::timestamptz[]) AS c(job_id, fired_at, next_run_at)
WHERE j.job_id = c.job_id AND (j.next_run_at IS NULL OR j.next_run_at <= c.fired_at)

-- name: ensure_partitions
SELECT ensure_job_runs_partitions((now() - interval '1 month')::date, 4)

-- name: expire_runs
SELECT partition_name, action, runs FROM expire_job_runs($1)

-- name: expire_applied_commands
-- A replay only comes from the commands topic's uncommitted tail: ids older than the topic's
-- retention can never come back. Bounded per round so it never holds the table for long.
DELETE FROM applied_commands
WHERE command_id IN (SELECT command_id FROM applied_commands
                     WHERE applied_at < now() - make_interval(days => $1) LIMIT 50000)

-- name: lock_jobs
-- The jobs of a batch of creates that exist already: those creates take the one-by-one path.
-- Locked in one order, as insert_jobs inserts, so two writers (during a rebalance) wait for
-- each other rather than deadlock.
SELECT job_id FROM jobs WHERE job_id = ANY($1::text[]) ORDER BY job_id FOR UPDATE

-- name: record_commands
-- record_command for a batch; returns the ids not applied before (the others are replays).
INSERT INTO applied_commands (command_id, job_id)
SELECT * FROM unnest($1::text[], $2::text[])
ON CONFLICT (command_id) DO NOTHING
RETURNING command_id

-- name: applied_before
SELECT command_id FROM applied_commands WHERE command_id = ANY($1::text[])

-- name: insert_jobs
-- insert_job for a batch of creates, one row per job, in one statement.
INSERT INTO jobs (job_id, tenant, name, spec, schedule_type, target_type, state, version,
                  priority, labels, next_run_at, enqueue_at, created_command, created_at, updated_at,
                  planned_count)
SELECT job_id, tenant, name, spec::jsonb, schedule_type, target_type, state, 1, priority,
       labels::jsonb, next_run_at, enqueue_at, created_command, created_at, created_at,
       planned_count
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
            $8::smallint[], $9::text[], $10::timestamptz[], $11::timestamptz[], $12::text[],
            $13::timestamptz[], $14::bigint[])
     AS c(job_id, tenant, name, spec, schedule_type, target_type, state, priority, labels,
          next_run_at, enqueue_at, created_command, created_at, planned_count)

-- name: insert_alerts
-- Alerts found while applying a batch of statuses, in its transaction (ADR 0033). The id is
-- derived from (kind, run), so a replayed status inserts nothing twice.
INSERT INTO alerts (alert_id, tenant, job_id, run_id, kind, at, detail)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                     $6::timestamptz[], $7::jsonb[])
ON CONFLICT (alert_id) DO NOTHING
RETURNING kind

-- name: late_waiting
-- First attempts of jobs with a `late_after_seconds` that have not started that long after
-- they were due (ADR 0033): run requests still queued for an executor, and instants never
-- queued at all (the job's next_run_at left behind, no run recorded for it). $1 now, $2 how far
-- back (older ones are the operator's alerts, not news), $3 at most this many. The caller drops
-- those an executor took meanwhile (statuses not applied yet). Both halves read partial indexes
-- whose rows are few unless firing is behind: queued runs, active jobs' next instants.
(SELECT r.tenant, r.job_id, r.scheduled_at, 'queued' AS waiting,
        (j.spec ->> 'late_after_seconds')::bigint AS late_after_seconds
 FROM job_runs r JOIN jobs j ON j.job_id = r.job_id
 WHERE r.status = 'queued' AND r.modified_at > $1::timestamptz - $2::interval
   AND r.scheduled_at > $1::timestamptz - $2::interval AND r.attempt = 1
   AND jsonb_typeof(j.spec -> 'late_after_seconds') = 'number'
   AND r.scheduled_at + make_interval(secs => (j.spec ->> 'late_after_seconds')::float8)
       < $1::timestamptz
 LIMIT $3)
UNION ALL
(SELECT j.tenant, j.job_id, j.next_run_at, 'not queued',
        (j.spec ->> 'late_after_seconds')::bigint
 FROM jobs j
 WHERE j.state = 'active'
   AND j.next_run_at < $1::timestamptz AND j.next_run_at > $1::timestamptz - $2::interval
   AND jsonb_typeof(j.spec -> 'late_after_seconds') = 'number'
   AND j.next_run_at + make_interval(secs => (j.spec ->> 'late_after_seconds')::float8)
       < $1::timestamptz
   AND NOT EXISTS (SELECT 1 FROM job_runs r
                   WHERE r.job_id = j.job_id AND r.scheduled_at = j.next_run_at)
 LIMIT $3)

-- name: pending_alerts
-- The outbox's next alerts, with the webhook their job names for their kind now. Locked, and
-- skipped by another writer doing the same, until they are on Kafka and marked.
SELECT a.alert_id, a.tenant, a.job_id, a.run_id, a.kind, a.at, a.detail,
       j.spec -> ('on_' || a.kind) AS webhook
FROM alerts a LEFT JOIN jobs j ON j.job_id = a.job_id
WHERE a.published_at IS NULL
ORDER BY a.at
LIMIT $1
FOR UPDATE OF a SKIP LOCKED

-- name: mark_alerts_published
UPDATE alerts SET published_at = now() WHERE alert_id = ANY($1::text[])

-- name: expire_alerts
-- Bounded per round, like expire_applied_commands.
DELETE FROM alerts
WHERE alert_id IN (SELECT alert_id FROM alerts
                   WHERE at < now() - make_interval(days => $1) LIMIT 50000)
