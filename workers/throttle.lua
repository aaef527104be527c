-- A 429 reached a worker: halve the fleet's rate for everyone, and honour a reset time.
-- KEYS[1] reservations zset, KEYS[2] slow key, KEYS[3] pause key (KEYS[4] unused)
-- ARGV[1] recovery per second, ARGV[2] lowest factor, ARGV[3] reset_after (us, 0 if none)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local factor = 1.0
local slow = redis.call('HMGET', KEYS[2], 'factor', 'at')
if slow[1] then
  factor = math.min(1.0, tonumber(slow[1]) + (now - tonumber(slow[2])) / 1000000 * tonumber(ARGV[1]))
end
factor = math.max(tonumber(ARGV[2]), factor / 2)
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
