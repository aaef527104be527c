-- Write one series atomically, as the cache contract says, and announce new closes.
-- KEYS[1] candles:{user}:{exchange}:{symbol}:{timeframe}
-- KEYS[2] backfill:checked:{...}: how far the exchange was checked (survives gaps: a bucket
--         with no trades is absent, yet checked)
-- KEYS[3] channel:candle:close:{user}:{exchange}:{symbol}:{timeframe}
-- ARGV[1] TTL seconds, ARGV[2] members to keep (1000), ARGV[3] checked-up-to bucket (ms,
-- 0: unchanged), ARGV[4] when the exchange was found to have nothing older (UNIX s, 0:
-- it has more; believed for a while only, see core/freshness.py), ARGV[5] announce:
-- 0 nothing, 1 every new candle (oldest first), 2 only the newest candle if it is new;
-- then score, member pairs, oldest first.
-- One member per timestamp: whatever holds a candle's score is replaced, never duplicated.
-- A candle is new when no member held its score before: announced once, whoever wrote it.
-- returns {members held after, candles announced}
local key = KEYS[1]
local announce = tonumber(ARGV[5])
local fresh = {}
for i = 6, #ARGV, 2 do
  if redis.call('ZCOUNT', key, ARGV[i], ARGV[i]) == 0 then
    fresh[#fresh + 1] = ARGV[i + 1]
  elseif announce == 2 then
    fresh = {}
  end
  redis.call('ZREMRANGEBYSCORE', key, ARGV[i], ARGV[i])
  redis.call('ZADD', key, ARGV[i], ARGV[i + 1])
end
if announce == 2 and #fresh > 0 then
  -- only the newest written candle, and only if it is itself new
  local newest = ARGV[#ARGV]
  if fresh[#fresh] == newest then fresh = {newest} else fresh = {} end
end
redis.call('ZREMRANGEBYRANK', key, 0, -(tonumber(ARGV[2]) + 1))
local ttl = tonumber(ARGV[1])
if redis.call('EXISTS', key) == 1 then
  redis.call('EXPIRE', key, ttl)
end
local checked = tonumber(ARGV[3])
if checked > 0 then
  local old = tonumber(redis.call('HGET', KEYS[2], 'upto') or '0')
  if checked > old then
    redis.call('HSET', KEYS[2], 'upto', ARGV[3])
  end
  redis.call('HSET', KEYS[2], 'exhausted', ARGV[4])
  redis.call('EXPIRE', KEYS[2], ttl)
end
local announced = 0
if announce > 0 then
  for _, member in ipairs(fresh) do
    redis.call('PUBLISH', KEYS[3], member)
    announced = announced + 1
  end
end
return {redis.call('ZCARD', key), announced}
