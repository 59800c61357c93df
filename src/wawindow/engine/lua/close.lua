--[[
Sends a conversation's due warnings and closes its window once it has expired, atomically.
Any number of workers may call this for the same conversation at once: the state decides,
so each warning and each close happens exactly once.

KEYS[1]  conversation state (HASH)     KEYS[2]  shard deadline index (ZSET)
KEYS[3]  shard outbox (HASH)           KEYS[4]  shard outbox queue (ZSET)

ARGV[1]  the conversation key
ARGV[2]  now: wall-clock Unix seconds
ARGV[3]  closing_soon offsets, seconds, comma-separated, largest first

Returns the JSON array of transitions ("[]" when nothing was due: already closed, extended
in the meantime, or not due yet).
]]

local state, due, outbox, outq = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local ckey, now = ARGV[1], tonumber(ARGV[2])
local offsets = {}
for off in string.gmatch(ARGV[3], "[^,]+") do offsets[#offsets + 1] = tonumber(off) end

local vals = redis.call("HMGET", state, "csw_opened", "csw_expires", "csw_closed", "csw_warned",
                       "waba", "pn", "user_id", "wa_id")
local opened, expires, closed, warned = tonumber(vals[1]), tonumber(vals[2]), vals[3], tonumber(vals[4] or "0")
local who = {waba = vals[5], pn = vals[6], user_id = vals[7], wa_id = vals[8]}
if expires == nil or closed == "1" then
  redis.call("ZREM", due, ckey)
  return "[]"
end

local transitions = {}
local function emit(kind, id_parts, time, data)
  transitions[#transitions + 1] = {
    type = kind, id = redis.sha1hex(ckey .. "|" .. kind .. "|" .. table.concat(id_parts, "|")),
    time = time, data = data, key = ckey,
    waba = who.waba or nil, pn = who.pn or nil,
    user_id = who.user_id or nil, wa_id = who.wa_id or nil,
  }
end

if now >= expires then
  -- closed_at is the true end, not the moment this noticed it
  emit("service_window.closed", {opened, expires, expires}, expires,
       {opened_at = opened, expires_at = expires, closed_at = expires, reason = "expired"})
  redis.call("HSET", state, "csw_closed", 1)
  redis.call("ZREM", due, ckey)
else
  local next_due = expires
  for i = warned + 1, #offsets do
    local at = expires - offsets[i]
    if now >= at then
      emit("service_window.closing_soon", {opened, expires, offsets[i]}, at,
           {opened_at = opened, expires_at = expires, seconds_left = expires - now, offset = offsets[i]})
      warned = i
    else
      next_due = at
      break
    end
  end
  redis.call("HSET", state, "csw_warned", warned)
  redis.call("ZADD", due, next_due, ckey)
end

if #transitions == 0 then return "[]" end
local encoded = cjson.encode(transitions)
local field = ckey .. "|close:" .. transitions[#transitions].id
redis.call("HSET", outbox, field, encoded)
redis.call("ZADD", outq, now, field)
return encoded
