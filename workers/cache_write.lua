-- Write one series atomically, as the cache contract says.
-- KEYS[1] candles:{user}:{exchange}:{symbol}:{timeframe}
-- KEYS[2] backfill:checked:{...}: how far the exchange was checked (survives gaps: a bucket
--         with no trades is absent, yet checked)
-- ARGV[1] TTL seconds, ARGV[2] members to keep (1000), ARGV[3] checked-up-to bucket (ms,
-- 0: unchanged), ARGV[4] 1 if the exchange has nothing older to give, then score, member pairs.
-- One member per timestamp: whatever holds a candle's score is replaced, never duplicated.
local key = KEYS[1]
for i = 5, #ARGV, 2 do
  redis.call('ZREMRANGEBYSCORE', key, ARGV[i], ARGV[i])
  redis.call('ZADD', key, ARGV[i], ARGV[i + 1])
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
return redis.call('ZCARD', key)
