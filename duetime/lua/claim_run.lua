-- claim_run: take the lease on one attempt of a run before executing it.
-- Guarantees at most one execution per attempt at a time, whatever version of the job each
-- request belongs to (the run id is the same for every version's firing at that instant):
-- - "done": the attempt already finished (ran, was cancelled or refused by overlap), or a
--   newer version's request found it finished for good.
-- - "next": an older version's attempt failed and scheduled a retry: this newer version's
--   request continues the run as its next attempt (ARGV[8], added to the due-set now) instead
--   of repeating the finished one; the old version's retry is stale and dropped.
-- - "held": anyone (this executor included, e.g. for a duplicated request) holds an unexpired
--   lease on it for the same or a newer version.
-- - "later": an older version's attempt holds the lease and has started: it fires as the
--   edit found it; this request is put back (due in ARGV[9] ms) to look again once it ends.
-- - "ok": the lease is taken. An older version's holder that has not started is taken over:
--   start_run refuses it as stale and it releases nothing of ours.
-- KEYS: leases (runkey -> expiry ms), owners (runkey -> "executor|member"), done flag key,
--       due, running (job_id -> runkey of its started attempt)
-- ARGV: runkey, executor_id, now_ms, ttl_ms, member, version, job_id, next_member, later_ms
local version = tonumber(ARGV[6])
local done = redis.call('GET', KEYS[3])
if done then
  local done_version, kind = string.match(done, '^(%d+)|(%a+)$')
  if kind == 'retry' and tonumber(done_version) < version then
    redis.call('ZADD', KEYS[4], 'NX', tonumber(ARGV[3]), ARGV[8])
    return 'next'
  end
  return 'done'
end
local expiry = redis.call('ZSCORE', KEYS[1], ARGV[1])
if expiry and tonumber(expiry) > tonumber(ARGV[3]) then
  local owner = redis.call('HGET', KEYS[2], ARGV[1]) or ''
  local held = tonumber(string.match(owner, '^[^|]*|%d|[^|]+|(%d+)|') or '')
  if held == nil or held >= version then return 'held' end
  if redis.call('HGET', KEYS[5], ARGV[7]) == ARGV[1] then
    redis.call('ZADD', KEYS[4], 'NX', tonumber(ARGV[3]) + tonumber(ARGV[9]), ARGV[5])
    return 'later'
  end
end
redis.call('ZADD', KEYS[1], tonumber(ARGV[3]) + tonumber(ARGV[4]), ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2] .. '|' .. ARGV[5])
return 'ok'
