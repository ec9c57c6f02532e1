-- trim_finished: forget jobs that ended long enough ago that no run request of theirs can
-- still arrive (the redelivery window), so cancelled and completed jobs do not stay forever.
-- Atomically, for each job in `finished` ended at or before ARGV[1] (at most ARGV[2] of them):
-- removes it from `finished` and, only if `jobs` still holds it as cancelled or completed,
-- removes its `jobs` and `specs` entries. A job loaded again meanwhile (a run-now of a completed
-- job) was re-scored by that load, so it is not due here yet.
-- KEYS: finished (job_id -> ms it ended), jobs (job_id -> "version|state"), specs
-- ARGV: before_ms, limit
-- Returns the number of jobs forgotten.
local ids = redis.call('ZRANGE', KEYS[1], '-inf', ARGV[1], 'BYSCORE', 'LIMIT', 0, tonumber(ARGV[2]))
local forgotten = 0
for _, job_id in ipairs(ids) do
  redis.call('ZREM', KEYS[1], job_id)
  local meta = redis.call('HGET', KEYS[2], job_id)
  local state = meta and string.match(meta, '|(%a+)$')
  if state == 'cancelled' or state == 'completed' then
    redis.call('HDEL', KEYS[2], job_id)
    redis.call('HDEL', KEYS[3], job_id)
    forgotten = forgotten + 1
  end
end
return forgotten
