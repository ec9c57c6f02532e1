-- requeue_expired_leases: an attempt whose lease was not renewed lost its executor; put its
-- due-set entry back so another executor runs it. Atomic per shard: the lease is released and
-- the entry re-added together, so it is neither lost nor requeued twice. A first attempt keeps
-- its original due score (its scheduled instant) so catch-up still applies to it.
-- The member is also marked lost (with the executor that held it): its run may be recorded
-- `queued` or `running`, so if pop_due drops it (the job was cancelled or completed meanwhile)
-- the dispatcher must record how the run ended instead of leaving it so for ever.
-- KEYS: leases, owners, due, lost (member -> executor id)   ARGV: now_ms, limit
local expired = redis.call('ZRANGE', KEYS[1], '-inf', ARGV[1], 'BYSCORE', 'LIMIT', 0, tonumber(ARGV[2]))
for _, runkey in ipairs(expired) do
  local owner = redis.call('HGET', KEYS[2], runkey)
  redis.call('ZREM', KEYS[1], runkey)
  redis.call('HDEL', KEYS[2], runkey)
  if owner then
    local executor, member = string.match(owner, '^([^|]*)|(.*)$')
    if member then
      local sched, attempt = string.match(member, '^%d|[^|]+|%d+|(%d+)|(%d+)|%a$')
      redis.call('ZADD', KEYS[3], 'NX', attempt == '1' and sched or ARGV[1], member)
      redis.call('HSET', KEYS[4], member, executor)
    end
  end
end
return #expired
