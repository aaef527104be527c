-- Write one series atomically, as the cache contract says, and announce new closes.
-- One member per timestamp: whatever holds a candle's score is replaced, never duplicated.
-- A candle is new when no member held its score before: announced once, whoever wrote it.
-- returns {members held after, candles announced}, then with a read-back the series' state
-- after the write: the checked hash's upto and exhausted ('' where absent), and the newest
-- members at or before the read-back bucket, newest first, as pairs {score, member}: the
-- member is 1 where it is one this call wrote (the writer knows it sound)
local key = KEYS[1]      -- candles:{user}:{exchange}:{symbol}:{timeframe}
local checked = KEYS[2]  -- backfill:checked:{...}: how far the exchange was checked (a
                         -- bucket with no trades is absent, yet checked)
local channel = KEYS[3]  -- channel:candle:close:{user}:{exchange}:{symbol}:{timeframe}
local ttl = tonumber(ARGV[1])           -- seconds
local keep = tonumber(ARGV[2])          -- members to keep (1000)
local checked_upto = tonumber(ARGV[3])  -- newest bucket asked about (ms; 0: unchanged)
local exhausted_at = ARGV[4]            -- when nothing older was found (UNIX s; 0: more
                                        -- exists; believed a while only, core/freshness.py)
local announce = tonumber(ARGV[5])      -- 0 nothing, 1 every new candle (oldest first),
                                        -- 2 only the newest candle if it is new
local junk = tonumber(ARGV[6])          -- members to remove first: they break the contract
local back_upto = ARGV[7]               -- read back at or before this score (ms; '': none)
local back_n = tonumber(ARGV[8])        -- members to read back
-- then the junk members (ARGV[9] ...), then the members, oldest first, in one argument
-- joined by newlines (a member is JSON without one): each one's score is its own
-- timestamp, read from its text (the writer checked it is `{"timestamp":<ms>,...`)
for i = 9, 8 + junk do
  redis.call('ZREM', key, ARGV[i])
end
local fresh = {}
local wrote = {}
local newest = nil
for member in string.gmatch(ARGV[9 + junk], '[^\n]+') do
  local score = string.match(member, '^{"timestamp":([1-9][0-9]*),')
  if not score then
    return redis.error_reply('member without a leading timestamp: ' .. string.sub(member, 1, 40))
  end
  if redis.call('ZCOUNT', key, score, score) == 0 then
    fresh[#fresh + 1] = member
  elseif announce == 2 then
    fresh = {}
  end
  redis.call('ZREMRANGEBYSCORE', key, score, score)
  redis.call('ZADD', key, score, member)
  wrote[member] = true
  newest = member
end
if announce == 2 and #fresh > 0 then
  -- only the newest written candle, and only if it is itself new
  if fresh[#fresh] == newest then fresh = {newest} else fresh = {} end
end
redis.call('ZREMRANGEBYRANK', key, 0, -(keep + 1))
if redis.call('EXISTS', key) == 1 then
  redis.call('EXPIRE', key, ttl)
end
if checked_upto > 0 then
  local old = tonumber(redis.call('HGET', checked, 'upto') or '0')
  if checked_upto > old then
    redis.call('HSET', checked, 'upto', string.format('%.0f', checked_upto))
  end
  redis.call('HSET', checked, 'exhausted', exhausted_at)
  redis.call('EXPIRE', checked, ttl)
end
local announced = 0
if announce > 0 then
  for _, member in ipairs(fresh) do
    redis.call('PUBLISH', channel, member)
    announced = announced + 1
  end
end
local out = {redis.call('ZCARD', key), announced}
if back_upto ~= '' then
  local marks = redis.call('HMGET', checked, 'upto', 'exhausted')
  out[3] = marks[1] or ''
  out[4] = marks[2] or ''
  local held = redis.call('ZREVRANGEBYSCORE', key, back_upto, '-inf', 'WITHSCORES',
                          'LIMIT', 0, back_n)
  for i = 1, #held, 2 do
    out[#out + 1] = held[i + 1]
    out[#out + 1] = wrote[held[i]] and 1 or held[i]
  end
end
return out
