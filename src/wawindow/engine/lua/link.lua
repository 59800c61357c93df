--[[
Merges the state a user had under one conversation key into another key of the same user
(their wa_id key into their BSUID key, or an old number's key into the new number's), so one
user's state never splits in two. Merging twice gives the same result.

KEYS[1]  target state (HASH)      KEYS[2]  target ledger (HASH)
KEYS[3]  target shard deadline index (ZSET)

ARGV[1]  source state, JSON object (HGETALL of the old key, applied event ids included)
ARGV[2]  (unused)
ARGV[3]  source ledger, JSON object (wamid -> record)
ARGV[4]  the target conversation key
ARGV[5]  closing_soon offsets, seconds, comma-separated, largest first
ARGV[6]  how long applied event ids and the ledger are kept, seconds
ARGV[7]  now, Unix seconds      ARGV[8]  how long state outlives its window, seconds

Returns 1. (common.lua is prepended when it is loaded.)
]]

local state, ledger, due = KEYS[1], KEYS[2], KEYS[3]
local src = cjson.decode(ARGV[1])
local ckey, dedupe_ttl, now, grace = ARGV[4], tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local offsets = parse_offsets(ARGV[5])

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
-- the window that ends later wins, with its warnings and close state
local se, te = tonumber(src.csw_expires), tonumber(t.csw_expires)
if se ~= nil and (te == nil or se > te) then
  for _, f in ipairs({"csw_opened", "csw_expires", "csw_closed", "csw_warned"}) do
    if src[f] ~= nil then set(f, src[f]) end
  end
end
-- the free entry point window that ends later wins too
local sf, tf = tonumber(src.fep_expires), tonumber(t.fep_expires)
if sf ~= nil and (tf == nil or sf > tf) then
  for _, f in ipairs({"fep_opened", "fep_expires", "fep_closed", "fep_src"}) do
    if src[f] ~= nil then set(f, src[f]) end
  end
end
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

for wamid, rec in pairs(cjson.decode(ARGV[3])) do redis.call("HSETNX", ledger, wamid, rec) end
if redis.call("EXISTS", ledger) == 1 then redis.call("EXPIRE", ledger, dedupe_ttl) end

-- the next warning or close, across the window, the entry point and conversations
schedule(due, ckey, t, offsets)
local keep_until = now + grace
local function keep(at) if at ~= nil and at + grace > keep_until then keep_until = at + grace end end
keep(tonumber(t.csw_expires))
keep(tonumber(t.fep_expires))
for _, c in pairs(conversations(t)) do keep(c.e) end
if t.marketing_opt_out == "1" or t.opted_out == "1" then
  local ttl = redis.call("TTL", state)
  if ttl > 0 and now + ttl > keep_until then keep_until = now + ttl end
end
redis.call("EXPIREAT", state, keep_until)
return 1
