-- start_run: the last check before an attempt fires, at its due instant.
-- Atomically: refuses a scheduled firing whose job was edited ("stale"), cancelled or paused
-- since it was dispatched (edits and cancels win; a run-now yields to a cancel only), applies the overlap policy against the job's run that is
-- still running (its lease alive), and records this attempt as the job's running one.
-- A stale or paused firing does not use the attempt up: its lease is released here (if it is
-- still ours; a newer version's request may have taken it over) and no done flag is set, so
-- the current version's firing for the same instant (or the one a resume loads) still runs.
-- An edit or a pause governs the instants from when it was issued: a scheduled firing due
-- before that is owed under its own version, and fires however late it is judged here (a
-- backlog in the executors, ADR 0036); `until` holds, per version, when that version stopped
-- governing. A cancel stops everything not started.
-- KEYS: jobs (job_id -> "version|state"), running (job_id -> runkey), leases, owners,
--       until (this job's version -> ms)
-- ARGV: job_id, version, flag, runkey, overlap policy, now_ms, owner ("executor|member"),
--       scheduled_ms
-- Returns "ok", "stale", "cancelled", "paused", "overlap", "replace:<runkey of the old run>"
-- or "lost".
local function release(verdict)
  if redis.call('HGET', KEYS[4], ARGV[4]) == ARGV[7] then
    redis.call('ZREM', KEYS[3], ARGV[4])
    redis.call('HDEL', KEYS[4], ARGV[4])
  end
  return verdict
end
-- First, the attempt must still be the caller's, its lease unexpired: an executor cut off from
-- Redis (or frozen) past its lease finds it requeued by the sweep, or claimed by another
-- executor or by a newer version's request; firing then would fire the instant twice. "lost"
-- changes nothing: whoever holds the attempt now decides it. This is also what makes this
-- script safe to retry when its reply was lost (a second call by the owner answers as the first).
local expiry = redis.call('ZSCORE', KEYS[3], ARGV[4])
if redis.call('HGET', KEYS[4], ARGV[4]) ~= ARGV[7] or not expiry
    or tonumber(expiry) <= tonumber(ARGV[6]) then
  return 'lost'
end
local meta = redis.call('HGET', KEYS[1], ARGV[1])
if meta then
  local version, state = string.match(meta, '^(%d+)|(%a+)$')
  if state == 'cancelled' then return 'cancelled' end
  -- A run-now is not superseded by an edit, pause or resume since it was requested.
  if ARGV[3] == 's' and (version ~= ARGV[2] or state == 'paused') then
    local untl = redis.call('HGET', KEYS[5], ARGV[2])
    local owed = untl and tonumber(ARGV[8]) < tonumber(untl)
    if not owed then
      if version ~= ARGV[2] then return release('stale') end
      return release('paused')
    end
  end
end
local verdict = 'ok'
local current = redis.call('HGET', KEYS[2], ARGV[1])
if current and current ~= ARGV[4] and ARGV[3] ~= 'o' then
  local expiry = redis.call('ZSCORE', KEYS[3], current)
  if expiry and tonumber(expiry) > tonumber(ARGV[6]) then
    if ARGV[5] == 'forbid' then return 'overlap' end
    if ARGV[5] == 'replace' then verdict = 'replace:' .. current end
  end
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[4])
return verdict
