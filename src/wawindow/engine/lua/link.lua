--[[
Merges the state a user had under one conversation key into another key of the same user
(their wa_id key into their BSUID key, or an old number's key into the new number's), so one
user's state never splits in two. Merging twice gives the same result.

KEYS[1]  target state (HASH)      KEYS[2]  target ledger (HASH)
KEYS[3]  target shard deadline index (ZSET)

ARGV[1]  source state, JSON object (HGETALL of the old key, applied event ids included)
ARGV[2]  source ledger, JSON object (wamid -> record)
ARGV[3]  the target conversation key
ARGV[4]  closing_soon offsets, seconds, comma-separated, largest first
ARGV[5]  how long applied event ids and the ledger are kept, seconds
ARGV[6]  now, Unix seconds      ARGV[7]  how long state outlives its window, seconds

Returns 1. (common.lua is prepended when it is loaded.)
]]

local state, ledger, due = KEYS[1], KEYS[2], KEYS[3]
local src = cjson.decode(ARGV[1])
local ckey, dedupe_ttl, now, grace = ARGV[3], tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local offsets = parse_offsets(ARGV[4])

local t = load_state(state, ckey)
local changed = {}
local function set(field, value)
  t[field] = value
  changed[#changed + 1] = field
  changed[#changed + 1] = value
end

for _, f in ipairs({"waba", "user_id", "wa_id"}) do
  if t[f] == nil and src[f] ~= nil then set(f, src[f]) end
end
-- the events applied under the old key stay applied
for f, v in pairs(src) do
  if string.sub(f, 1, 2) == "s:" and t[f] == nil then set(f, v) end
end
-- of each window, the one that ends later wins, with its warnings and close state
local function take_later(expires, fields)
  local se, te = tonumber(src[expires]), tonumber(t[expires])
  if se == nil or (te ~= nil and se <= te) then return end
  for _, f in ipairs(fields) do
    if src[f] ~= nil then set(f, src[f]) end
  end
end
take_later("csw_expires", {"csw_opened", "csw_expires", "csw_closed", "csw_warned"})
take_later("fep_expires", {"fep_opened", "fep_expires", "fep_closed", "fep_src"})
-- open conversations: per category, the one that ends later
for f, v in pairs(src) do
  if string.sub(f, 1, 3) == "cv:" and (t[f] == nil or cjson.decode(v).e > cjson.decode(t[f]).e) then set(f, v) end
end
-- each opt-out flag: the most recent decision wins
for _, f in ipairs({"marketing_opt_out", "opted_out"}) do
  local sa, ta = tonumber(src[f .. "_at"] or "-1"), tonumber(t[f .. "_at"] or "-1")
  if src[f] ~= nil and sa > ta then set(f, src[f]); set(f .. "_at", src[f .. "_at"]) end
end
if #changed > 0 then redis.call("HSET", state, unpack(changed)) end

for wamid, rec in pairs(cjson.decode(ARGV[2])) do redis.call("HSETNX", ledger, wamid, rec) end
if redis.call("EXISTS", ledger) == 1 then redis.call("EXPIRE", ledger, dedupe_ttl) end

-- the next warning or close, across the window, the entry point and conversations
schedule(due, ckey, t, offsets)
-- an opted-out user's state keeps the longer life it already had
expire_state(state, t, now, grace, now + math.max(redis.call("TTL", state), 0))
return 1
