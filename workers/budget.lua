-- A sliding one-second window over the whole fleet: reserve the next send slot such that
-- no window of `window_us` ever holds more than `limit` sends, and say how long to wait.
-- The reserve (core/reserve.py) holds slots back for live work: a caller that may not use
-- it sees the limit minus the slots still held; a live caller takes one.
-- returns {wait_us, granted (1|0), factor * 1000, member}
local sends = KEYS[1]    -- zset of reserved send times (us); `:late`, `:seq` beside it
local slow = KEYS[2]     -- hash: factor, at (see throttle.lua)
local paused = KEYS[3]   -- us timestamp before which nobody sends (after a reset time)
local reserve = KEYS[4]  -- slots held back for live work
local banned = KEYS[5]   -- the exchange banned us until this time (ms): no slot before
local limit_at_full = tonumber(ARGV[1])  -- requests per window at full rate
local window = tonumber(ARGV[2])         -- us
local max_wait = tonumber(ARGV[3])       -- us the caller accepts; beyond it nothing is taken
local recovery = tonumber(ARGV[4])       -- factor regained per second after a slow-down
local min_gap = tonumber(ARGV[5])        -- us between two sends, at least
local live = tonumber(ARGV[6]) == 1      -- the caller may take a reserved slot
local stale = ARGV[7]                    -- the caller's own slot it woke too late for, or ''
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local ban = redis.call('GET', banned)
if ban then
  return {0, 0, 0, 'banned:' .. ban}  -- nothing is sent into a ban
end
local factor = 1.0
local slowed = redis.call('HMGET', slow, 'factor', 'at')
if slowed[1] then
  factor = math.min(1.0, tonumber(slowed[1]) + (now - tonumber(slowed[2])) / 1000000 * recovery)
end
local limit = math.max(1, math.floor(limit_at_full * factor))
local held = tonumber(redis.call('GET', reserve) or '0')
if not live and held > 0 then
  limit = math.max(1, limit - held)  -- other work leaves live work its slots
end
if stale ~= '' then
  -- never sent: release it, count it, and do not take a second reserved slot for it
  redis.call('ZREM', sends, stale)
  redis.call('INCR', sends .. ':late')
  redis.call('EXPIRE', sends .. ':late', 86400)
end
redis.call('ZREMRANGEBYSCORE', sends, '-inf', now - window)
local send_at = now
local paused_until = tonumber(redis.call('GET', paused) or '0')
if paused_until > send_at then send_at = paused_until end
local n = redis.call('ZCARD', sends)
local gap = min_gap
if n >= limit then
  -- the limit-th newest reservation must have left the window before this one enters it
  local kth = redis.call('ZRANGE', sends, n - limit, n - limit, 'WITHSCORES')
  local earliest = tonumber(kth[2]) + window
  if earliest > send_at then send_at = earliest end
  -- sustained (a full window): evenly spaced, not the idle burst's pattern repeated
  -- every window, so that an exchange counting late bunches as few sends as possible
  gap = math.max(gap, window / limit)
end
if n > 0 then
  -- spread a burst a little: the exchange then receives (and counts) it as it was sent
  local newest = redis.call('ZRANGE', sends, -1, -1, 'WITHSCORES')
  local after = tonumber(newest[2]) + gap
  if after > send_at then send_at = after end
end
local wait = send_at - now
if wait > max_wait then
  return {wait, 0, math.floor(factor * 1000), ''}
end
local member = string.format('%.0f', send_at) .. ':' .. redis.call('INCR', sends .. ':seq')
redis.call('ZADD', sends, send_at, member)
if live and held > 0 and stale == '' then redis.call('DECR', reserve) end
redis.call('PEXPIRE', sends, math.ceil((send_at - now + window) / 1000) + 1000)
redis.call('PEXPIRE', sends .. ':seq', math.ceil((send_at - now + window) / 1000) + 1000)
return {wait, 1, math.floor(factor * 1000), member}
