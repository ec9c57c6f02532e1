-- pop_due: atomically take every entry due by ARGV[2] out of the due-set.
-- Guarantees: an entry leaves the due-set only by moving into the in-flight set (scored with
-- the pop time, so a dispatcher that dies before Kafka acknowledges can be recovered), or by
-- being dropped because its job version is stale, or the job is cancelled, paused or unknown.
-- An older version's scheduled firing, or a paused job's, is dropped unless it is owed: its
-- instant came before the edit or pause that ended its version was issued (ADR 0036). Such an
-- entry is popped again when its executor lost the lease (killed, or starved of CPU past it)
-- or its dispatcher died; it runs with its own version's run template, kept beside `until`.
-- An entry the lease sweep put back (marked in `lost`) dropped because its job was cancelled or
-- completed meanwhile (whatever the verdict: a cancel's new version makes it stale) is dropped
-- as "lost-cancelled" or "lost-completed" instead, with the job's template if any
-- (a cancelled job's keeps only its tenant): its run may be recorded `queued` or `running`
-- and the dispatcher ends it. The mark goes whenever the entry leaves the due-set here.
-- KEYS: due, inflight, jobs (job_id -> "version|state"), specs (job_id -> run template JSON),
--       nexts (member -> the job's next instant after this firing, for catch-up; kept until the
--       entry is acknowledged, dropped here with a dropped entry),
--       until prefix (+ ':' .. job_id: version -> ms it governed until, and
--       version .. ':spec' -> its run template; same hash slot as the others),
--       lost (member -> id of the executor that lost its lease on it; requeue_expired_leases)
-- ARGV: now_ms, until_ms, limit
-- Returns a flat list of {verdict, member, score, spec, next} where verdict is "run" or a drop
-- reason, ending with {"next", "", score of the earliest entry left (or ""), "", ""}.
-- The run template an owed entry of `version` fires with, or nil when it is not owed.
local function owed(job_id, version, sched)
  local until_key = KEYS[6] .. ':' .. job_id
  local untl = redis.call('HGET', until_key, version)
  if not untl or tonumber(sched) >= tonumber(untl) then return nil end
  return redis.call('HGET', until_key, version .. ':spec') or nil
end
local entries = redis.call('ZRANGE', KEYS[1], '-inf', ARGV[2], 'BYSCORE', 'LIMIT', 0, tonumber(ARGV[3]), 'WITHSCORES')
local out = {}
-- Usually empty: then no entry pays for looking up its mark.
local any_lost = redis.call('EXISTS', KEYS[7]) == 1
for i = 1, #entries, 2 do
  local member, score = entries[i], entries[i + 1]
  redis.call('ZREM', KEYS[1], member)
  local _, job_id, version, sched, _, flag = string.match(member, '^(%d)|([^|]+)|(%d+)|(%d+)|(%d+)|(%a)$')
  -- flag: 's' scheduled, 'm' run-now, 'o' run-now overriding the overlap policy
  local verdict = 'run'
  local spec = ''
  local state = nil
  if job_id == nil then
    verdict = 'malformed'
  else
    local meta = redis.call('HGET', KEYS[3], job_id)
    if not meta then
      verdict = 'unknown'
    else
      local cur_version
      cur_version, state = string.match(meta, '^(%d+)|(%a+)$')
      local held_back = flag == 's' and (cur_version ~= version or state == 'paused')
      local owed_spec = nil
      if held_back and state ~= 'cancelled' and state ~= 'completed' then
        owed_spec = owed(job_id, version, sched)
      end
      -- A run-now ('m', 'o') is an explicit request: an edit, pause or resume since does not
      -- supersede it (it runs the current spec); only a cancel does.
      if owed_spec then
        spec = owed_spec
      elseif cur_version ~= version and flag == 's' then
        verdict = 'stale'
      elseif state == 'cancelled' or (state == 'completed' and flag == 's') then
        verdict = state
      elseif state == 'paused' and flag == 's' then
        verdict = 'paused'
        spec = redis.call('HGET', KEYS[4], job_id) or ''
      else
        spec = redis.call('HGET', KEYS[4], job_id) or ''
        if spec == '' then verdict = 'unknown' end
      end
    end
  end
  -- Dropped as stale too when the cancel bumped the version: the job's state decides.
  if any_lost and redis.call('HDEL', KEYS[7], member) == 1 and verdict ~= 'run'
      and (state == 'cancelled' or state == 'completed') then
    verdict = 'lost-' .. state
    spec = redis.call('HGET', KEYS[4], job_id) or ''
  end
  local nxt = redis.call('HGET', KEYS[5], member) or ''
  if verdict == 'run' then
    redis.call('ZADD', KEYS[2], ARGV[1], member)
  elseif nxt ~= '' then
    redis.call('HDEL', KEYS[5], member)
  end
  out[#out + 1] = verdict
  out[#out + 1] = member
  out[#out + 1] = score
  out[#out + 1] = spec
  out[#out + 1] = nxt
end
local head = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
out[#out + 1] = 'next'
out[#out + 1] = ''
out[#out + 1] = head[2] or ''
out[#out + 1] = ''
out[#out + 1] = ''
return out
