-- heartbeat: a path of the system (the dispatcher, the watcher) proves it was alive at
-- ARGV[1]; a silence longer than ARGV[2] before it was an outage, recorded (merged with the
-- outages it overlaps) so catch-up can tell "the system was down" from "it was busy".
-- KEYS: beat (ms of the path's last proof of life), outages (zset "start|end", scored by end)
-- ARGV: alive_ms ('' only reads), gap_ms, offset_ms (the outage starts this long after the last
--       beat: what the path had already done covers that much), keep (outages kept)
-- Returns the outages as "start|end" strings, then the last beat ('' if none).
local alive = tonumber(ARGV[1])
local last = tonumber(redis.call('GET', KEYS[1]))
if alive then
  if last and alive - last > tonumber(ARGV[2]) then
    local s, e = last + tonumber(ARGV[3]), alive
    if e > s then
      for _, m in ipairs(redis.call('ZRANGE', KEYS[2], s, '+inf', 'BYSCORE')) do
        local ms, me = string.match(m, '^(%d+)|(%d+)$')
        if ms and tonumber(ms) <= e then
          s = math.min(s, tonumber(ms))
          e = math.max(e, tonumber(me))
          redis.call('ZREM', KEYS[2], m)
        end
      end
      redis.call('ZADD', KEYS[2], e, string.format('%d|%d', s, e))
      redis.call('ZREMRANGEBYRANK', KEYS[2], 0, -(tonumber(ARGV[4]) + 1))
    end
  end
  if not last or alive > last then
    last = alive
    redis.call('SET', KEYS[1], string.format('%d', alive))
  end
end
local out = redis.call('ZRANGE', KEYS[2], 0, -1)
out[#out + 1] = last and string.format('%d', last) or ''
return out
