-- claim_run: take the lease on one attempt of a run before executing it.
-- Guarantees at most one live executor per attempt: refuses when the attempt already finished
-- ("done") or another executor holds an unexpired lease ("held").
-- KEYS: leases (runkey -> expiry ms), owners (runkey -> "executor|member"), done flag key
-- ARGV: runkey, executor_id, now_ms, ttl_ms, member
if redis.call('EXISTS', KEYS[3]) == 1 then return 'done' end
local expiry = redis.call('ZSCORE', KEYS[1], ARGV[1])
if expiry and tonumber(expiry) > tonumber(ARGV[3]) then
  local owner = redis.call('HGET', KEYS[2], ARGV[1]) or ''
  if string.sub(owner, 1, string.len(ARGV[2]) + 1) ~= ARGV[2] .. '|' then return 'held' end
end
redis.call('ZADD', KEYS[1], tonumber(ARGV[3]) + tonumber(ARGV[4]), ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2] .. '|' .. ARGV[5])
return 'ok'
