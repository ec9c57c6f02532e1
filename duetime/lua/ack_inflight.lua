-- ack_inflight: entries whose run requests Kafka acknowledged leave the in-flight set, and
-- their stored next instants (kept for catch-up until now) go with them, atomically.
-- KEYS: inflight, nexts   ARGV: member...
-- In chunks: unpack() of more values than Lua's stack holds fails.
for i = 1, #ARGV, 1000 do
  local last = math.min(i + 999, #ARGV)
  redis.call('ZREM', KEYS[1], unpack(ARGV, i, last))
  redis.call('HDEL', KEYS[2], unpack(ARGV, i, last))
end
return #ARGV
