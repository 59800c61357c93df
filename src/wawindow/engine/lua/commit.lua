--[[
Writes what the rules (src/wawindow/rules) made of a batch's documents (conversations or
people), each atomically and only if nobody wrote it since it was read (optimistic
concurrency on its version): the new state, its window events into the outbox (until Kafka
acknowledges them), its next deadline, and its finance counter changes. Then drops the outbox
entries of earlier writes that Kafka has acknowledged since.

One call per batch on a single Redis, one per shard on a Cluster (engine/scripts.py,
Scripts.commit): every key of a call then shares its hash tag.

KEYS, six per document, in order:
  1  its state (STRING: "<version> <state document>"; a string, not a hash, since a
     document longer than 64 bytes would turn a hash into Redis's larger encoding)
  2  its part of the shard's deadline index (ZSET "{ww:<n>}:due:<part>")
  3  shard outbox (HASH)   4  shard outbox queue (ZSET)
  5  its alias (STRING): when the user was linked to another key since, nothing is written
     (the caller reads again and follows the link)
  6  the shard's deadline summary (ZSET: part -> its earliest deadline), kept by
     summary.lua's keep_summary, which is loaded before this
then two per shard whose acknowledged entries are dropped: its outbox and outbox queue.

ARGV[1]  now (wall-clock Unix seconds)
ARGV[2]  how long a day's counters are kept past the day (seconds)
ARGV[3]  how many documents
then per document, its argument count first:
  1  the conversation key          2  the version that was read ("0": none)
  3  the new state document ("": forget the document)
  4  when the state may be forgotten (Unix seconds; "0": never, a person's consent): its
     TTL, once it has no deadline (5 is ""); until then it has none
  5  the next deadline (Unix seconds; "": none)
  6  the shard's counter key prefix; "<prefix><UTC day>" is a day's HASH
  7  the window events, a JSON array ("": none); they wait in the outbox under the field
     "<conversation key>|v<new version>", which read.lua finds again
  8  the whole stored string the rules ran on, when the caller did not read it but
     remembers writing it (src/wawindow/engine/reads.py); "": the version alone decides.
     A version can come back after the key was lost (expired, deleted, a Redis restart
     that lost writes); the whole string cannot, unless it is the same state.
  9...  counter changes, three arguments each: UTC day, field, delta
then per shard of acknowledged entries: how many fields, then the fields.

Returns one reply per document: 1 when written, 0 when the state changed since it was read
or the user was linked elsewhere (read again and retry), or an error for that document
alone (the others are written).
]]

local SHARD_KEY_TTL = 9 * 86400 -- outbox entries are acknowledged long before; refreshed on write
local DAY = 86400
local now, counter_ttl = ARGV[1], tonumber(ARGV[2])

local function commit(k, a, last)
  local state, part_key, outbox, outq = KEYS[k], KEYS[k + 1], KEYS[k + 2], KEYS[k + 3]
  local ckey, seen, doc = ARGV[a], ARGV[a + 1], ARGV[a + 2]
  local keep, due, prefix, events = ARGV[a + 3], ARGV[a + 4], ARGV[a + 5], ARGV[a + 6]

  if redis.call("GET", KEYS[k + 4]) then return 0 end
  local stored = redis.call("GET", state)
  local version = stored and string.match(stored, "^(%d+) ") or "0"
  if version ~= seen then return 0 end
  if ARGV[a + 7] ~= "" and stored ~= ARGV[a + 7] then return 0 end
  version = tostring(tonumber(version) + 1)

  if events ~= "" then
    local field = ckey .. "|v" .. version
    redis.call("HSET", outbox, field, events)
    redis.call("ZADD", outq, now, field)
    redis.call("EXPIRE", outbox, SHARD_KEY_TTL)
    redis.call("EXPIRE", outq, SHARD_KEY_TTL)
  end

  if doc == "" then
    redis.call("DEL", state)
  elseif keep == "0" or due ~= "" then
    -- no TTL while the state has a deadline: its member in the index stands for it, and the
    -- sweeper's write at the last deadline sets the TTL (a TTL costs 43 bytes a key)
    redis.call("SET", state, version .. " " .. doc)
  else
    redis.call("SET", state, version .. " " .. doc, "EXAT", keep)
  end

  -- the index has no TTL: a member leaves it only when its state has no deadline left or is
  -- forgotten, and a sorted set that loses its last member is gone
  if due == "" then
    redis.call("ZREM", part_key, ckey)
  else
    redis.call("ZADD", part_key, due, ckey)
  end
  keep_summary(part_key, KEYS[k + 5]) -- summary.lua

  for i = a + 8, last, 3 do
    local key = prefix .. ARGV[i]
    redis.call("HINCRBY", key, ARGV[i + 1], ARGV[i + 2])
    redis.call("EXPIREAT", key, (tonumber(ARGV[i]) + 1) * DAY + counter_ttl)
  end
  return 1
end

local out = {}
local k, a = 1, 4
for i = 1, tonumber(ARGV[3]) do
  local count = tonumber(ARGV[a])
  local ok, written = pcall(commit, k, a + 1, a + count)
  if ok then
    out[i] = written
  else -- this document alone: what it wrote before the error stays, as a script's would
    out[i] = redis.error_reply(type(written) == "table" and written.err or tostring(written))
  end
  k, a = k + 6, a + count + 1
end

-- acknowledged outbox entries, a shard at a time, in slices Lua's unpack can take
while a <= #ARGV do
  local fields = tonumber(ARGV[a])
  for first = a + 1, a + fields, 1000 do
    local last = math.min(first + 999, a + fields)
    redis.call("HDEL", KEYS[k], unpack(ARGV, first, last))
    redis.call("ZREM", KEYS[k + 1], unpack(ARGV, first, last))
  end
  k, a = k + 2, a + fields + 1
end
return out
