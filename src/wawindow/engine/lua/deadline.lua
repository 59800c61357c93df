--[[
Sets one key's next deadline in its part of the shard's deadline index (the sweeper setting a
conversation aside), or only brings the shard's summary up to date with that part (the
sweeper found the summary early: the part's members moved on, or the part was deleted).

KEYS[1]  the part of the shard's deadline index (ZSET "{ww:<n>}:due:<part>")
KEYS[2]  the shard's deadline summary (ZSET: part -> its earliest deadline), as commit.lua
         keeps it
All keys share the shard's hash tag, so this runs unchanged on Redis Cluster.

ARGV[1]  the conversation key ("": none, only the summary)   ARGV[2]  its deadline (Unix seconds)

Returns the part's earliest deadline, or false when the part is empty.
]]

local due, summary = KEYS[1], KEYS[2]
if ARGV[1] ~= "" then
  redis.call("ZADD", due, ARGV[2], ARGV[1])
end
local first = redis.call("ZRANGE", due, 0, 0, "WITHSCORES")
local part = string.match(due, ":(%d+)$")
if first[1] then
  redis.call("ZADD", summary, first[2], part)
  return first[2]
end
redis.call("ZREM", summary, part)
return false
