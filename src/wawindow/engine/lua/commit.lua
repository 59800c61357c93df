--[[
Writes what the rules (src/wawindow/rules) made of one conversation, atomically and only if
nobody wrote it since it was read (optimistic concurrency on its version): the new state, its
window events into the outbox (until Kafka acknowledges them), its next deadline, and its
finance counter changes.

KEYS[1]  conversation (or person) state (STRING: "<version> <state document>"; a string, not a hash, since
         a document longer than 64 bytes would turn a hash into Redis's larger encoding)
KEYS[2]  the key's part of the shard's deadline index (ZSET "{ww:<n>}:due:<part>")
KEYS[3]  shard outbox (HASH)   KEYS[4]  shard outbox queue (ZSET)
KEYS[5]  the key's alias (STRING): when the user was linked to another key since, nothing is
         written (the caller reads again and follows the link)
KEYS[6]  the shard's deadline summary (ZSET: part -> its earliest deadline), kept by
         summary.lua's keep_summary, which is loaded before this
All keys share the shard's hash tag (counter keys too), so this runs unchanged on Redis Cluster.

ARGV[1]  the conversation key          ARGV[2]  the version that was read ("0": none)
ARGV[3]  the new state document ("": forget the conversation)
ARGV[4]  when the state may be forgotten (Unix seconds; "0": never, a person's consent): its
         TTL, once it has no deadline (ARGV[5] ""); until then it has none
ARGV[5]  the next deadline (Unix seconds; "": none)
ARGV[6]  now (wall-clock Unix seconds)
ARGV[7]  the shard's counter key prefix; "<prefix><UTC day>" is a day's HASH
ARGV[8]  how long a day's counters are kept past the day (seconds)
ARGV[9]  the window events, a JSON array ("": none); they wait in the outbox under the field
         "<conversation key>|v<new version>", which read.lua finds again
ARGV[10] the whole stored string the rules ran on, when the caller did not read it but
         remembers writing it (src/wawindow/engine/reads.py); "": the version alone decides.
         A version can come back after the key was lost (expired, deleted, a Redis restart
         that lost writes); the whole string cannot, unless it is the same state.
ARGV[11...]  counter changes, three arguments each: UTC day, field, delta

Returns 1 when written, 0 when the state changed since it was read, or the user was linked
elsewhere (read again and retry).
]]

local SHARD_KEY_TTL = 9 * 86400 -- outbox entries are acknowledged long before; refreshed on write
local DAY = 86400
local state, part_key, outbox, outq = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local ckey, seen, doc = ARGV[1], ARGV[2], ARGV[3]

if redis.call("GET", KEYS[5]) then return 0 end
local stored = redis.call("GET", state)
local version = stored and string.match(stored, "^(%d+) ") or "0"
if version ~= seen then return 0 end
if ARGV[10] ~= "" and stored ~= ARGV[10] then return 0 end
version = tostring(tonumber(version) + 1)

if ARGV[9] ~= "" then
  local field = ckey .. "|v" .. version
  redis.call("HSET", outbox, field, ARGV[9])
  redis.call("ZADD", outq, ARGV[6], field)
  redis.call("EXPIRE", outbox, SHARD_KEY_TTL)
  redis.call("EXPIRE", outq, SHARD_KEY_TTL)
end

if doc == "" then
  redis.call("DEL", state)
elseif ARGV[4] == "0" or ARGV[5] ~= "" then
  -- no TTL while the state has a deadline: its member in the index stands for it, and the
  -- sweeper's write at the last deadline sets the TTL (a TTL costs 43 bytes a key)
  redis.call("SET", state, version .. " " .. doc)
else
  redis.call("SET", state, version .. " " .. doc, "EXAT", ARGV[4])
end

-- the index has no TTL: a member leaves it only when its state has no deadline left or is
-- forgotten, and a sorted set that loses its last member is gone
if ARGV[5] == "" then
  redis.call("ZREM", part_key, ckey)
else
  redis.call("ZADD", part_key, ARGV[5], ckey)
end
keep_summary(part_key, KEYS[6]) -- summary.lua

local prefix, counter_ttl = ARGV[7], tonumber(ARGV[8])
for i = 11, #ARGV, 3 do
  local key = prefix .. ARGV[i]
  redis.call("HINCRBY", key, ARGV[i + 1], ARGV[i + 2])
  redis.call("EXPIREAT", key, (tonumber(ARGV[i]) + 1) * DAY + counter_ttl)
end
return 1
