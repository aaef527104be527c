-- Slow the whole fleet down: a 429 reached a worker (halve the rate, honour a reset time),
-- or the exchange counted more of our sends in its window than the budget planned (a
-- gentler step, at most once per window, so one bunch of answers is one step).
-- returns the factor * 1000
local sends = KEYS[1]   -- the reservations zset (its `:crowded` counter lives beside it)
local slow = KEYS[2]    -- hash: factor, at
local paused = KEYS[3]  -- us timestamp before which nobody sends
local recovery = tonumber(ARGV[1])    -- factor regained per second
local lowest = tonumber(ARGV[2])      -- never slower than this factor
local reset_us = tonumber(ARGV[3])    -- pause everyone this long (0: no pause)
local multiplier = tonumber(ARGV[4])  -- 0.5 for a 429, 0.8 for a near-miss
local quiet_us = tonumber(ARGV[5])    -- no second step within this time (0: always step)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local factor = 1.0
local slowed = redis.call('HMGET', slow, 'factor', 'at')
if slowed[1] then
  factor = math.min(1.0, tonumber(slowed[1]) + (now - tonumber(slowed[2])) / 1000000 * recovery)
end
if quiet_us > 0 and slowed[2] and now - tonumber(slowed[2]) < quiet_us then
  return math.floor(factor * 1000)
end
if quiet_us > 0 then
  redis.call('INCR', sends .. ':crowded')
  redis.call('EXPIRE', sends .. ':crowded', 86400)
end
factor = math.max(lowest, factor * multiplier)
redis.call('HSET', slow, 'factor', tostring(factor), 'at', string.format('%.0f', now))
redis.call('PEXPIRE', slow, math.ceil((1.0 - factor) / recovery * 1000) + 1000)
if reset_us > 0 then
  local resume = now + reset_us
  local paused_until = tonumber(redis.call('GET', paused) or '0')
  if resume > paused_until then
    redis.call('SET', paused, string.format('%.0f', resume), 'PX', math.ceil(reset_us / 1000) + 1000)
  end
end
return math.floor(factor * 1000)
