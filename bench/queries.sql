-- name: seed_future_active
-- Active one-shot jobs due in 2090-2099, with their cursor set (enqueue_at): the watcher's
-- partial index holds them, but none is due within its window, so none is ever loaded.
INSERT INTO jobs (job_id, tenant, name, spec, schedule_type, target_type, state, priority, labels,
                  next_run_at, enqueue_at, created_command, created_at, updated_at)
SELECT md5($1 || ':' || i), $1, 'future-' || i,
       jsonb_build_object('name', 'future-' || i,
                          'schedule', jsonb_build_object('type', 'once', 'at', due),
                          'target', jsonb_build_object('type', 'http',
                                                       'url', 'http://127.0.0.1:28999/never')),
       'once', 'http', 'active', 5, '{}'::jsonb, due, due, 'seed', now(), now()
FROM generate_series($2::int, $3::int) AS i,
     LATERAL (SELECT '2090-01-01T00:00:00Z'::timestamptz + (i % 3650) * interval '1 day') AS d(due)

-- name: active_with_cursor
SELECT count(*) FROM jobs WHERE state = 'active' AND enqueue_at IS NOT NULL
