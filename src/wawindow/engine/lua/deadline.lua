--[[
Sets aside a conversation the sweeper could not sweep (its next deadline moved to ARGV[2], and
its state, which has no TTL while it has a deadline, given one so that a state that never
becomes sweepable is not kept for ever), or only brings the shard's summary up to date with a
part (the sweeper found the summary early: the part's members moved on, or it was deleted).

KEYS[1]  the part of the shard's deadline index (ZSET "{ww:<n>}:due:<part>")
KEYS[2]  the shard's deadline summary (ZSET: part -> its earliest deadline), kept by
         summary.lua's keep_summary, which is loaded before this
KEYS[3]  the conversation's state (STRING), when ARGV[1] names one
All keys share the shard's hash tag, so this runs unchanged on Redis Cluster.

ARGV[1]  the conversation key ("": none, only the summary)   ARGV[2]  its deadline (Unix seconds)
ARGV[3]  the TTL its state gets if it has none (seconds)
ARGV[4]  when the sweeper found it due (Unix seconds)

Only a deadline the sweeper found due moves: one at ARGV[4] or before. A conversation
written since with a later deadline (a new event) keeps it, and its state keeps no TTL; one
no longer in the index (swept meanwhile, or forgotten) is not put back.
Returns the part's earliest deadline, or false when the part is empty.
]]

local part_key, summary = KEYS[1], KEYS[2]
if ARGV[1] ~= "" then
  local current = redis.call("ZSCORE", part_key, ARGV[1])
  if current and tonumber(current) <= tonumber(ARGV[4]) then
    redis.call("ZADD", part_key, ARGV[2], ARGV[1])
    redis.call("EXPIRE", KEYS[3], ARGV[3], "NX") -- NX: only a state without a TTL
  end
end
return keep_summary(part_key, summary) -- summary.lua
