-- claim_run: take the lease on one attempt of a run before executing it.
-- Guarantees at most one execution per attempt at a time: refuses when the attempt already
-- finished ("done") or anyone — this executor included, e.g. for a duplicated request — holds
-- an unexpired lease on it ("held").
-- KEYS: leases (runkey -> expiry ms), owners (runkey -> "executor|member"), done flag key
-- ARGV: runkey, executor_id, now_ms, ttl_ms, member
if redis.call('EXISTS', KEYS[3]) == 1 then return 'done' end
local expiry = redis.call('ZSCORE', KEYS[1], ARGV[1])
if expiry and tonumber(expiry) > tonumber(ARGV[3]) then return 'held' end
redis.call('ZADD', KEYS[1], tonumber(ARGV[3]) + tonumber(ARGV[4]), ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2] .. '|' .. ARGV[5])
return 'ok'
