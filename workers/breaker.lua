-- The fleet's circuit breaker for one exchange budget (one hash, shared by every worker).
-- It opens only when the failures span two series or more: one bad product (or one slow
-- path) is that series' problem, not the exchange's.
-- While open, a series that failed since the last success (a suspect: maybe only its own
-- product is bad) may probe only one cool-down after the others could: a healthy series
-- gets the probe first, and its success closes the breaker, so a few bad products cannot
-- keep it open by probing. With only suspects left, they still probe (one at a time).
-- returns {verdict, transition, wait_ms}: allow -> 1 (go), 2 (go; a success would change
-- nothing) or 0 (do not ask the exchange);
-- transition is 'opened', 'closed' or '' so exactly one worker logs each change; wait_ms
-- is how long until this caller may be let through (0 unless denied).
local key = KEYS[1]            -- hash: state (closed|open), failures, until_ms, probe_ms
local failed_series = KEYS[2]  -- set: the series that failed since the last success
local op = ARGV[1]                   -- allow | success | failure
local threshold = tonumber(ARGV[2])  -- failures that open it
local cooldown = tonumber(ARGV[3])   -- ms open before one probe
local series = ARGV[4]               -- the asking or failing series ('' if unknown)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local state = redis.call('HGET', key, 'state') or 'closed'
local keep = cooldown * 20 + 60000
if op == 'allow' then
  if state ~= 'open' then
    -- 2: go, and nothing is there for a success to reset (the caller need not report it)
    local failures = tonumber(redis.call('HGET', key, 'failures') or '0')
    if failures == 0 and redis.call('EXISTS', failed_series) == 0 then return {2, '', 0} end
    return {1, '', 0}
  end
  local until_ms = tonumber(redis.call('HGET', key, 'until_ms') or '0')
  if series ~= '' and redis.call('SISMEMBER', failed_series, series) == 1 then
    until_ms = until_ms + cooldown  -- a suspect: the others probe first
  end
  if now < until_ms then return {0, '', until_ms - now} end
  -- cooled down: one probe at a time (a probe that never reports frees itself after cooldown)
  local probe = tonumber(redis.call('HGET', key, 'probe_ms') or '0')
  if probe > 0 and now < probe + cooldown then return {0, '', probe + cooldown - now} end
  redis.call('HSET', key, 'probe_ms', now)
  return {1, '', 0}
elseif op == 'success' then
  redis.call('DEL', failed_series)
  if state == 'open' then
    redis.call('DEL', key)
    return {1, 'closed', 0}
  end
  redis.call('HSET', key, 'failures', 0)
  redis.call('PEXPIRE', key, keep)
  return {1, '', 0}
else
  local failures = redis.call('HINCRBY', key, 'failures', 1)
  redis.call('SADD', failed_series, series)
  redis.call('PEXPIRE', failed_series, keep)
  local transition = ''
  if state == 'open' or (failures >= threshold and redis.call('SCARD', failed_series) >= 2) then
    if state ~= 'open' then transition = 'opened' end
    redis.call('HSET', key, 'state', 'open', 'until_ms', now + cooldown, 'probe_ms', 0)
  end
  redis.call('PEXPIRE', key, keep)
  return {0, transition, 0}
end
