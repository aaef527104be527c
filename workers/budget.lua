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
local start = now
local paused_until = tonumber(redis.call('GET', paused) or '0')
if paused_until > start then start = paused_until end

-- Where a request queues: after every reservation, once the limit-th newest has left the
-- window, and a least gap after the newest (spreading a burst a little, so the exchange
-- receives and counts it as it was sent).
local send_at = start
local n = redis.call('ZCARD', sends)
if n >= limit then
  local kth = redis.call('ZRANGE', sends, n - limit, n - limit, 'WITHSCORES')
  send_at = math.max(send_at, tonumber(kth[2]) + window)
end
if n > 0 then
  local newest = redis.call('ZRANGE', sends, -1, -1, 'WITHSCORES')
  send_at = math.max(send_at, tonumber(newest[2]) + min_gap)
end

-- Live work, and a thread whose slot went stale (it was in line already), may go before
-- reservations made for later: at the earliest time within a window of now that keeps
-- every window holding it within the limit and is a least gap from every other send.
-- Only windows holding the new send change: each starts just after (t - window) or at a
-- send in (t - window, t]. `es` is sorted; one pass per candidate, a bounded number of them.
local function fits(t, es)
  local n = #es
  local lo = 1
  while lo <= n and es[lo] <= t - window do lo = lo + 1 end
  local hi = lo
  while hi <= n and es[hi] < t + min_gap do
    if es[hi] > t - min_gap then return false end  -- too close to another send
    hi = hi + 1
  end
  hi = lo
  while hi <= n and es[hi] < t do hi = hi + 1 end
  if hi - lo + 1 > limit then return false end  -- the window just after t - window
  hi = lo
  for i = lo, n do
    if es[i] > t then break end
    if hi < i then hi = i end
    while hi <= n and es[hi] < es[i] + window do hi = hi + 1 end
    if hi - i + 1 > limit then return false end  -- the window from this send
  end
  return true
end
local MAX_CANDIDATES = 64
if (live or stale ~= '') and send_at > start then
  local horizon = math.min(send_at, start + window)
  local raw = redis.call('ZRANGEBYSCORE', sends, string.format('(%.0f', start - window),
                         string.format('(%.0f', horizon + window), 'WITHSCORES')
  local es = {}
  for i = 2, #raw, 2 do es[#es + 1] = tonumber(raw[i]) end
  local candidates = {start}
  for _, e in ipairs(es) do
    local c = e + min_gap
    if #candidates >= MAX_CANDIDATES or c >= horizon then break end
    if c > start then candidates[#candidates + 1] = c end
  end
  for _, c in ipairs(candidates) do
    if fits(c, es) then
      send_at = c
      break
    end
  end
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
