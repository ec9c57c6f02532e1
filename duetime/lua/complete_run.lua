-- complete_run: finish an attempt after its final status was acknowledged by Kafka.
-- Atomically marks the attempt done (so a redelivered request cannot run it again), releases
-- the lease, and, when the attempt failed with attempts left, schedules the next attempt.
-- KEYS: leases, owners, done flag key, due, running (job_id -> runkey)
-- ARGV: runkey, done_ttl_s, retry_member ('' for none), retry_score_ms, job_id
redis.call('SET', KEYS[3], '1', 'EX', tonumber(ARGV[2]))
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
if redis.call('HGET', KEYS[5], ARGV[5]) == ARGV[1] then
  redis.call('HDEL', KEYS[5], ARGV[5])
end
if ARGV[3] ~= '' then
  redis.call('ZADD', KEYS[4], ARGV[4], ARGV[3])
end
return 1
