-- A sliding one-second window over the whole fleet: reserve the next send slot such that
-- no window of `window_us` ever holds more than `limit` sends, and say how long to wait.
-- KEYS[1] zset of reserved send times (us), KEYS[2] slow hash (factor, at; see throttle.lua),
-- KEYS[3] pause key (us timestamp before which nobody sends, after a reset time),
-- KEYS[4] reserve: slots held back for the run's first timeframe (set by the dispatcher)
-- ARGV[1] limit (requests per window at full rate), ARGV[2] window (us), ARGV[3] longest
-- wait (us) the caller accepts (beyond it nothing is reserved), ARGV[4] recovery per second,
-- ARGV[5] smallest gap between two sends (us), ARGV[6] 1 if the caller is first in line,
-- ARGV[7] the caller's own reservation it woke up too late for ('' if none): released here
-- (it was never sent), counted in KEYS[1]:late, and its held-back slot is not taken twice
-- returns {wait_us, reserved (1|0), factor * 1000, member}
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local window = tonumber(ARGV[2])
local factor = 1.0
local slow = redis.call('HMGET', KEYS[2], 'factor', 'at')
if slow[1] then
  factor = math.min(1.0, tonumber(slow[1]) + (now - tonumber(slow[2])) / 1000000 * tonumber(ARGV[4]))
end
local limit = math.max(1, math.floor(tonumber(ARGV[1]) * factor))
local first = tonumber(ARGV[6]) == 1
local reserve = tonumber(redis.call('GET', KEYS[4]) or '0')
if not first and reserve > 0 then
  limit = math.max(1, limit - reserve)  -- later timeframes leave the first one its slots
end
local stale = ARGV[7] or ''
if stale ~= '' then
  redis.call('ZREM', KEYS[1], stale)
  redis.call('INCR', KEYS[1] .. ':late')
  redis.call('EXPIRE', KEYS[1] .. ':late', 86400)
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local send_at = now
local paused = tonumber(redis.call('GET', KEYS[3]) or '0')
if paused > send_at then send_at = paused end
local n = redis.call('ZCARD', KEYS[1])
local gap = tonumber(ARGV[5])
if n >= limit then
  -- the limit-th newest reservation must have left the window before this one enters it
  local kth = redis.call('ZRANGE', KEYS[1], n - limit, n - limit, 'WITHSCORES')
  local earliest = tonumber(kth[2]) + window
  if earliest > send_at then send_at = earliest end
  -- sustained (a full window): evenly spaced, not the idle burst's pattern repeated
  -- every window, so that an exchange counting late bunches as few sends as possible
  gap = math.max(gap, window / limit)
end
if n > 0 then
  -- spread a burst a little: the exchange then receives (and counts) it as it was sent
  local newest = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
  local after = tonumber(newest[2]) + gap
  if after > send_at then send_at = after end
end
local wait = send_at - now
if wait > tonumber(ARGV[3]) then
  return {wait, 0, math.floor(factor * 1000), ''}
end
local member = string.format('%.0f', send_at) .. ':' .. redis.call('INCR', KEYS[1] .. ':seq')
redis.call('ZADD', KEYS[1], send_at, member)
if first and reserve > 0 and stale == '' then redis.call('DECR', KEYS[4]) end
redis.call('PEXPIRE', KEYS[1], math.ceil((send_at - now + window) / 1000) + 1000)
redis.call('PEXPIRE', KEYS[1] .. ':seq', math.ceil((send_at - now + window) / 1000) + 1000)
return {wait, 1, math.floor(factor * 1000), member}
