--[[
Reads one conversation's state for the rules (src/wawindow/rules), with the window events its
last write left in the outbox that Kafka has not acknowledged yet.

KEYS[1]  conversation (or person) state (STRING: "<version> <state document>")
KEYS[2]  shard outbox (HASH)
KEYS[3]  the key's alias (STRING: the conversation key its user was linked to)
All keys share the shard's hash tag, so this runs unchanged on Redis Cluster.

ARGV[1]  the conversation key

Returns {alias} when the user lives under another key now; else
{false, version, state document or false, outbox field, transitions} (the last two only while
that write's window events wait in the outbox).
]]

local alias = redis.call("GET", KEYS[3])
if alias then return {alias} end
local stored = redis.call("GET", KEYS[1])
if not stored then return {false, "0", false} end
local space = string.find(stored, " ", 1, true)
local version = string.sub(stored, 1, space - 1)
local out = {false, version, string.sub(stored, space + 1)}
local field = ARGV[1] .. "|v" .. version
local pending = redis.call("HGET", KEYS[2], field)
if pending then
  out[4] = field
  out[5] = pending
end
return out
