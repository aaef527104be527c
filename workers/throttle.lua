-- Slow the whole fleet down: a 429 reached a worker (halve the rate, honour a reset time),
-- or the exchange counted more of our sends in its window than the budget planned (a
-- gentler step, at most once per window, so one bunch of answers is one step).
-- KEYS[1] reservations zset, KEYS[2] slow key, KEYS[3] pause key (KEYS[4] unused)
-- ARGV[1] recovery per second, ARGV[2] lowest factor, ARGV[3] reset_after (us, 0 if none),
-- ARGV[4] multiplier (0.5 for a 429), ARGV[5] quiet time (us): no second step within it
-- returns the factor * 1000
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local factor = 1.0
local slow = redis.call('HMGET', KEYS[2], 'factor', 'at')
if slow[1] then
  factor = math.min(1.0, tonumber(slow[1]) + (now - tonumber(slow[2])) / 1000000 * tonumber(ARGV[1]))
end
local quiet = tonumber(ARGV[5] or '0')
if quiet > 0 and slow[2] and now - tonumber(slow[2]) < quiet then
  return math.floor(factor * 1000)
end
if quiet > 0 then
  redis.call('INCR', KEYS[1] .. ':crowded')
  redis.call('EXPIRE', KEYS[1] .. ':crowded', 86400)
end
factor = math.max(tonumber(ARGV[2]), factor * tonumber(ARGV[4] or '0.5'))
redis.call('HSET', KEYS[2], 'factor', tostring(factor), 'at', string.format('%.0f', now))
redis.call('PEXPIRE', KEYS[2], math.ceil((1.0 - factor) / tonumber(ARGV[1]) * 1000) + 1000)
local reset = tonumber(ARGV[3])
if reset > 0 then
  local resume = now + reset
  local paused = tonumber(redis.call('GET', KEYS[3]) or '0')
  if resume > paused then
    redis.call('SET', KEYS[3], string.format('%.0f', resume), 'PX', math.ceil(reset / 1000) + 1000)
  end
end
return math.floor(factor * 1000)
