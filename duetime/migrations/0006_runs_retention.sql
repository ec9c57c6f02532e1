-- job_runs retention (ADR 0013): the writer's maintenance loop calls expire_job_runs with
-- now() - DUETIME_RUNS_RETENTION_DAYS every hour.
--
-- A monthly partition goes whole (DROP TABLE: no dead tuples, no vacuum) once its month ended
-- before the cutoff, unless it still holds a run that is not finished (queued/running): that is
-- a live attempt, never history, so the partition is kept and reported. Rows of job_runs_default
-- (instants outside every monthly partition, e.g. a one-shot `at` years in the past) are not
-- old because their scheduled_at is: they are deleted, in batches and counted, once *finished
-- and last modified* before the cutoff. Every action is returned, so none is silent.
CREATE FUNCTION expire_job_runs(cutoff timestamptz, default_batch integer DEFAULT 10000)
RETURNS TABLE (partition_name text, action text, runs bigint)
LANGUAGE plpgsql AS $$
DECLARE
    part record;
    unfinished bigint;
    deleted bigint;
BEGIN
    -- One caller at a time (several writers run this loop), and never queue an exclusive lock
    -- on job_runs behind a long query, which would stall every run write behind it: give up
    -- (SQLSTATE 55P03) and let the next round try again.
    PERFORM pg_advisory_xact_lock(hashtext('duetime: expire_job_runs'));
    PERFORM set_config('lock_timeout', '2s', true);
    FOR part IN
        SELECT n.nspname AS schema_name, c.relname AS name
        FROM pg_inherits i
        JOIN pg_class c ON c.oid = i.inhrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE i.inhparent = 'job_runs'::regclass
          AND pg_get_expr(c.relpartbound, c.oid) <> 'DEFAULT'
          AND substring(pg_get_expr(c.relpartbound, c.oid) FROM 'TO \(''([^'']+)''\)')::timestamptz
              <= cutoff
        ORDER BY c.relname
    LOOP
        EXECUTE format('SELECT count(*) FROM %I.%I WHERE status IN (''queued'', ''running'')',
                       part.schema_name, part.name) INTO unfinished;
        IF unfinished > 0 THEN
            RETURN QUERY SELECT part.name::text, 'kept: runs not finished'::text, unfinished;
        ELSE
            EXECUTE format('DROP TABLE %I.%I', part.schema_name, part.name);
            RETURN QUERY SELECT part.name::text, 'dropped'::text, NULL::bigint;
        END IF;
    END LOOP;
    DELETE FROM job_runs_default
    WHERE ctid IN (SELECT ctid FROM job_runs_default
                   WHERE modified_at < cutoff AND status NOT IN ('queued', 'running')
                   LIMIT default_batch);
    GET DIAGNOSTICS deleted = ROW_COUNT;
    IF deleted > 0 THEN
        RETURN QUERY SELECT 'job_runs_default'::text, 'deleted'::text, deleted;
    END IF;
END
$$;
