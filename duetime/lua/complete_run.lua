-- complete_run: finish an attempt after its final status was acknowledged by Kafka.
-- Atomically marks the attempt done (so a redelivered request cannot run it again), releases
-- the lease, and, when the attempt failed with attempts left, schedules the next attempt.
-- The done flag says "version|final" or "version|retry": a newer version's request for the
-- same run continues it after a retry (claim_run "next") and stops after a final attempt.
-- Only an attempt that ran, was cancelled or was refused for good is completed: a firing
-- refused as stale or paused releases its lease in start_run and leaves the run to fire.
-- KEYS: leases, owners, done flag key, due, running (job_id -> runkey)
-- ARGV: runkey, done_ttl_s, retry_member ('' for none), retry_score_ms, job_id, version
local kind = 'final'
if ARGV[3] ~= '' then kind = 'retry' end
redis.call('SET', KEYS[3], ARGV[6] .. '|' .. kind, 'EX', tonumber(ARGV[2]))
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
if redis.call('HGET', KEYS[5], ARGV[5]) == ARGV[1] then
  redis.call('HDEL', KEYS[5], ARGV[5])
end
if ARGV[3] ~= '' then
  redis.call('ZADD', KEYS[4], ARGV[4], ARGV[3])
end
return 1
