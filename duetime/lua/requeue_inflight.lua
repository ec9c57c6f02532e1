-- requeue_inflight: put entries that sat in the in-flight set too long back into the due-set.
-- An entry stays in-flight only between pop and Kafka's acknowledgement; one older than
-- ARGV[1] belongs to a dispatcher that died, so it is due again at once (never lost; a
-- duplicate run request is absorbed by the executor's claim on the run). A first attempt keeps
-- its original due score (its scheduled instant), so catch-up still judges it by whether that
-- instant fell inside an outage; later attempts are due now.
-- KEYS: inflight, due   ARGV: older_than_ms, now_ms, limit
local stale = redis.call('ZRANGE', KEYS[1], '-inf', ARGV[1], 'BYSCORE', 'LIMIT', 0, tonumber(ARGV[3]))
for _, member in ipairs(stale) do
  local sched, attempt = string.match(member, '^%d|[^|]+|%d+|(%d+)|(%d+)|%a$')
  redis.call('ZREM', KEYS[1], member)
  redis.call('ZADD', KEYS[2], 'NX', attempt == '1' and sched or ARGV[2], member)
end
return #stale
