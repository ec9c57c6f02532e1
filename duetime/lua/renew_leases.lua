-- renew_leases: extend the leases this executor still owns (never one another executor took).
-- KEYS: leases, owners   ARGV: executor_id, new_expiry_ms, runkey...
local renewed = 0
local prefix = ARGV[1] .. '|'
for i = 3, #ARGV do
  local owner = redis.call('HGET', KEYS[2], ARGV[i])
  if owner and string.sub(owner, 1, string.len(prefix)) == prefix then
    redis.call('ZADD', KEYS[1], 'XX', ARGV[2], ARGV[i])
    renewed = renewed + 1
  end
end
return renewed
