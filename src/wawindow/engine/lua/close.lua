--[[
Publishes a conversation's due warnings and closes what has ended on the wall clock: the
customer service window, the free entry point window, and derived conversations, each at its
true end. Any number of workers may call this for the same conversation at once: the state
decides, so each warning and each close happens exactly once. (common.lua is prepended.)

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
local offsets = parse_offsets(ARGV[3])

local s = load_state(state, ckey)
if next(s) == nil then
  redis.call("ZREM", due, ckey)
  return "[]"
end
local transitions, emit = new_emitter(ckey, s)
local deletes = {}
close_expired(s, now, emit, function(field) deletes[#deletes + 1] = field end)

local opened, expires = tonumber(s.csw_opened), tonumber(s.csw_expires)
local warned = tonumber(s.csw_warned or "0")
if expires ~= nil and s.csw_closed ~= "1" then
  if now >= expires then
    -- closed_at is the true end, not the moment this noticed it
    emit("service_window.closed", {opened, expires, expires}, expires,
         {opened_at = opened, expires_at = expires, closed_at = expires, reason = "expired"})
    s.csw_closed = "1"
  else
    for i = warned + 1, #offsets do
      local at = expires - offsets[i]
      if now < at then break end
      emit("service_window.closing_soon", {opened, expires, offsets[i]}, at,
           {opened_at = opened, expires_at = expires, seconds_left = expires - now, offset = offsets[i]})
      warned = i
    end
    s.csw_warned = tostring(warned)
  end
end

if #transitions > 0 then
  for _, f in ipairs({"csw_closed", "csw_warned", "fep_closed"}) do
    if s[f] ~= nil and s[f] ~= "0" then redis.call("HSET", state, f, s[f]) else deletes[#deletes + 1] = f end
  end
  if #deletes > 0 then redis.call("HDEL", state, unpack(deletes)) end
end
schedule(due, ckey, s, offsets)
local field = ckey .. "|close:" .. (transitions[#transitions] or {id = ""}).id
return save_outbox(outbox, outq, field, transitions, now)
