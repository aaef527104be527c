-- Forget a dead node once it holds nothing and is still silent; log the hand-back.
-- returns 1 forgotten, 0 not (it beat again, or still holds something)
local nodes = KEYS[1]      -- zset: node -> last beat
local held = KEYS[2]       -- set: the tags `node` holds
local handbacks = KEYS[3]  -- list: hand-back records, newest first
local node = ARGV[1]
local cutoff = ARGV[2]     -- '': no liveness check (a warm shutdown)
local record = ARGV[3]     -- '': nothing to log
local keep = ARGV[4]       -- records kept
local s = redis.call('ZSCORE', nodes, node)
if cutoff ~= '' and s and tonumber(s) >= tonumber(cutoff) then return 0 end
if redis.call('SCARD', held) > 0 then return 0 end
redis.call('ZREM', nodes, node)
redis.call('DEL', held)
if record ~= '' then
  redis.call('LPUSH', handbacks, record)
  redis.call('LTRIM', handbacks, 0, tonumber(keep) - 1)
end
return 1
