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

Returns 1.
]]

local state, ledger, due = KEYS[1], KEYS[2], KEYS[3]
local src = cjson.decode(ARGV[1])
local ckey, dedupe_ttl, now, grace = ARGV[4], tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local offsets = {}
for off in string.gmatch(ARGV[5], "[^,]+") do offsets[#offsets + 1] = tonumber(off) end

local t = {}
do
  local flat = redis.call("HGETALL", state)
  for i = 1, #flat, 2 do t[flat[i]] = flat[i + 1] end
end
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
-- each opt-out flag: the most recent decision wins
for _, f in ipairs({"marketing_opt_out", "opted_out"}) do
  local sa, ta = tonumber(src[f .. "_at"] or "-1"), tonumber(t[f .. "_at"] or "-1")
  if src[f] ~= nil and sa > ta then set(f, src[f]); set(f .. "_at", src[f .. "_at"]) end
end
if #changed > 0 then redis.call("HSET", state, unpack(changed)) end

for wamid, rec in pairs(cjson.decode(ARGV[3])) do redis.call("HSETNX", ledger, wamid, rec) end
if redis.call("EXISTS", ledger) == 1 then redis.call("EXPIRE", ledger, dedupe_ttl) end

local expires = tonumber(t.csw_expires)
if expires ~= nil and t.csw_closed ~= "1" then
  local next_due = expires
  local warned = tonumber(t.csw_warned or "0")
  if warned < #offsets then next_due = expires - offsets[warned + 1] end
  redis.call("ZADD", due, next_due, ckey)
  redis.call("EXPIRE", due, 9 * 86400) -- as common.lua's SHARD_KEY_TTL
end
local keep_until = now + grace
if expires ~= nil and expires + grace > keep_until then keep_until = expires + grace end
if t.marketing_opt_out == "1" or t.opted_out == "1" then
  local ttl = redis.call("TTL", state)
  if ttl > 0 and now + ttl > keep_until then keep_until = now + ttl end
end
redis.call("EXPIREAT", state, keep_until)
return 1
