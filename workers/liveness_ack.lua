-- An ack (or a reject without requeue) removes kombu's records only if the node still
-- holds the tag; otherwise the message was handed back and may be someone else's by now.
-- returns 1 removed, 0 not held
local held = KEYS[1]           -- set: the tags this node holds
local unacked_index = KEYS[2]  -- kombu's zset
local unacked = KEYS[3]        -- kombu's hash
local tag = ARGV[1]
if redis.call('SREM', held, tag) == 1 then
  redis.call('ZREM', unacked_index, tag)
  redis.call('HDEL', unacked, tag)
  return 1
end
return 0
