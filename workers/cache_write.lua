-- Write one series atomically, as the cache contract says.
-- KEYS[1] candles:{user}:{exchange}:{symbol}:{timeframe}
-- ARGV[1] TTL seconds, ARGV[2] members to keep (1000), then score, member pairs.
-- One member per timestamp: whatever holds a candle's score is replaced, never duplicated.
local key = KEYS[1]
for i = 3, #ARGV, 2 do
  redis.call('ZREMRANGEBYSCORE', key, ARGV[i], ARGV[i])
  redis.call('ZADD', key, ARGV[i], ARGV[i + 1])
end
redis.call('ZREMRANGEBYRANK', key, 0, -(tonumber(ARGV[2]) + 1))
redis.call('EXPIRE', key, tonumber(ARGV[1]))
return redis.call('ZCARD', key)
