-- GCRA over the whole fleet: reserve the next send slot and say how long to wait for it.
-- KEYS[1] tat key (theoretical arrival time, microseconds)
-- KEYS[2] slow key (hash: factor, at) written by throttle.lua after a 429
-- ARGV[1] base interval (us) between requests at full rate
-- ARGV[2] longest wait (us) the caller accepts; beyond it nothing is reserved
-- ARGV[3] recovery: factor regained per second after a 429
-- returns {wait_us, reserved (1|0), factor * 1000}
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local factor = 1.0
local slow = redis.call('HMGET', KEYS[2], 'factor', 'at')
if slow[1] then
  factor = math.min(1.0, tonumber(slow[1]) + (now - tonumber(slow[2])) / 1000000 * tonumber(ARGV[3]))
end
interval = interval / factor
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
local send_at = math.max(tat, now)
local wait = send_at - now
if wait > tonumber(ARGV[2]) then
  return {wait, 0, math.floor(factor * 1000)}
end
local next_tat = send_at + interval
redis.call('SET', KEYS[1], string.format('%.0f', next_tat), 'PX', math.ceil((next_tat - now) / 1000) + 1000)
return {wait, 1, math.floor(factor * 1000)}
