--[[
Put before commit.lua and deadline.lua when they are loaded (engine/scripts.py): how a shard's
deadline summary (ZSET: part -> its earliest deadline) is kept equal to one of its parts.
]]

-- The part's earliest deadline into the summary (the part out of it when empty); returns
-- that deadline, or false.
local function keep_summary(part_key, summary)
  local first = redis.call("ZRANGE", part_key, 0, 0, "WITHSCORES")
  local part = string.match(part_key, ":(%d+)$")
  if first[1] then
    redis.call("ZADD", summary, first[2], part)
    return first[2]
  end
  redis.call("ZREM", summary, part)
  return false
end
