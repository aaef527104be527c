-- Move one held message back to its queue(s): only while `node` holds it and, for a
-- sweep, only while `node` is still silent since `cutoff`.
-- returns 1 moved, 0 not held, -1 the node beat again
local held = KEYS[1]           -- set: the tags `node` holds
local unacked_index = KEYS[2]  -- kombu's zset
local unacked = KEYS[3]        -- kombu's hash
local nodes = KEYS[4]          -- zset: node -> last beat
-- then the message's queue keys (KEYS[5] ...)
local tag = ARGV[1]
local payload = ARGV[2]        -- the message as kombu's restore would push it
local node = ARGV[3]
local cutoff = ARGV[4]         -- '' : no liveness check (the node gives back its own)
local leftmost = ARGV[5]       -- '1': to the front of the queue
if cutoff ~= '' then
  local s = redis.call('ZSCORE', nodes, node)
  if s and tonumber(s) >= tonumber(cutoff) then return -1 end
end
if redis.call('SREM', held, tag) == 0 then return 0 end
local was = redis.call('HGET', unacked, tag)
redis.call('ZREM', unacked_index, tag)
redis.call('HDEL', unacked, tag)
if not was then return 0 end
for i = 5, #KEYS do
  if leftmost == '1' then redis.call('LPUSH', KEYS[i], payload)
  else redis.call('RPUSH', KEYS[i], payload) end
end
return 1
