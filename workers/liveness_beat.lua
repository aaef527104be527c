-- A node's beat: stamp its time (Redis's clock), re-score the tags it holds in kombu's
-- unacked index (XX: never resurrect an acked one), and forget tags no longer in
-- `unacked` (acked elsewhere, or restored by kombu's own backstop).
-- returns the beat's time (UNIX s, as text)
local nodes = KEYS[1]          -- zset: node -> last beat
local held = KEYS[2]           -- set: the tags this node holds
local unacked_index = KEYS[3]  -- kombu's zset: tag -> when delivered (the lease)
local unacked = KEYS[4]        -- kombu's hash: tag -> payload
local node = ARGV[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
redis.call('ZADD', nodes, now, node)
for _, tag in ipairs(redis.call('SMEMBERS', held)) do
  if redis.call('HEXISTS', unacked, tag) == 1 then
    redis.call('ZADD', unacked_index, 'XX', now, tag)
  else
    redis.call('SREM', held, tag)
  end
end
return tostring(now)
