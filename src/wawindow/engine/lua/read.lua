--[[
Reads one conversation's state for the rules (src/wawindow/rules), with the window events it
left in the outbox that Kafka has not acknowledged yet.

KEYS[1]  conversation state (HASH: v = version, s = the state document, p = pending outbox fields)
KEYS[2]  shard outbox (HASH)
KEYS[3]  the key's alias (STRING: the conversation key its user was linked to)
All keys share the shard's hash tag, so this runs unchanged on Redis Cluster.

Returns {alias} when the user lives under another key now; else
{false, version, state document or false, field, transitions, field, transitions, ...}.
]]

local alias = redis.call("GET", KEYS[3])
if alias then return {alias} end
local v = redis.call("HMGET", KEYS[1], "v", "s", "p")
local out = {false, v[1] or "0", v[2] or false}
if v[3] then
  for field in string.gmatch(v[3], "[^,]+") do
    local pending = redis.call("HGET", KEYS[2], field)
    if pending then
      out[#out + 1] = field
      out[#out + 1] = pending
    end
  end
end
return out
