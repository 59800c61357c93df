--[[
Applies one normalized webhook event to its conversation, atomically.

KEYS[1]  conversation state (HASH)          KEYS[2]  applied event ids (SET)
KEYS[3]  outbound message ledger (HASH)     KEYS[4]  shard deadline index (ZSET)
KEYS[5]  shard outbox (HASH)                KEYS[6]  shard outbox queue (ZSET)
All keys share the shard's hash tag, so this runs unchanged on Redis Cluster.

ARGV[1]  the event, JSON as on webhook-events
ARGV[2]  now: wall-clock Unix seconds (outbox queue and TTLs only; rules use Meta's time)
ARGV[3]  customer service window length, seconds
ARGV[4]  closing_soon offsets, seconds, comma-separated, largest first
ARGV[5]  how long state outlives its last window, seconds
ARGV[6]  how long applied event ids and the ledger are kept, seconds
ARGV[7]  how long counters are kept, seconds
ARGV[8]  counter key prefix of the shard (same hash tag); "<prefix><epoch day>" is a day's HASH
ARGV[9]  the conversation key (the event's own, or the key its user's state was linked to)

Returns the JSON array of window transitions the event caused, "[]" for none. A repeat of an
applied event changes nothing; it returns the transitions of its first application while they
are still in the outbox (not yet acknowledged by Kafka), so a crash between this script and the
publish never loses a transition, and the repeat carries the same ids.
]]

local state, seen, ledger, due, outbox, outq = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local ev = cjson.decode(ARGV[1])
local now = tonumber(ARGV[2])
local csw_len = tonumber(ARGV[3])
local grace, dedupe_ttl, counter_ttl = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local counter_prefix = ARGV[8]
local ckey = ARGV[9]

local offsets = {}
for off in string.gmatch(ARGV[4], "[^,]+") do offsets[#offsets + 1] = tonumber(off) end

-- 0. validate before any write: Redis does not roll back a script that fails half-way
if type(ev.event_id) ~= "string" or type(ev.data) ~= "table" then
  return redis.error_reply("event without event_id or data")
end
if (ev.kind == "message" or ev.kind == "status" or ev.kind == "user_preference") and type(ev.timestamp) ~= "number" then
  return redis.error_reply("event " .. ev.event_id .. " has no numeric timestamp")
end

-- 1. dedupe: a 64-bit digest of the event id, kept as long as Meta may re-send
local outbox_field = ckey .. "|" .. ev.event_id
if redis.call("SADD", seen, string.sub(redis.sha1hex(ev.event_id), 1, 16)) == 0 then
  return redis.call("HGET", outbox, outbox_field) or "[]"
end
redis.call("EXPIRE", seen, dedupe_ttl)

local s = {}
do
  local flat = redis.call("HGETALL", state)
  for i = 1, #flat, 2 do s[flat[i]] = flat[i + 1] end
end
local changed = {}
local function set(field, value)
  s[field] = tostring(value)
  changed[#changed + 1] = field
  changed[#changed + 1] = tostring(value)
end

local user = ev.user
if user ~= cjson.null and user ~= nil then
  if user.user_id ~= cjson.null and user.user_id ~= nil and s.user_id ~= user.user_id then set("user_id", user.user_id) end
  if user.wa_id ~= cjson.null and user.wa_id ~= nil and s.wa_id ~= user.wa_id then set("wa_id", user.wa_id) end
end
if s.waba ~= ev.waba_id then set("waba", ev.waba_id) end
if ev.phone_number_id ~= cjson.null and s.pn ~= ev.phone_number_id then set("pn", ev.phone_number_id) end

local transitions = {}
local function emit(kind, id_parts, time, data)
  transitions[#transitions + 1] = {
    type = kind, id = redis.sha1hex(ckey .. "|" .. kind .. "|" .. table.concat(id_parts, "|")),
    time = time, data = data, key = ckey,
    waba = s.waba, pn = s.pn, user_id = s.user_id, wa_id = s.wa_id,
  }
end

local function count(ts, metric, dims)
  local day = math.floor(ts / 86400)
  local field = math.floor((ts % 86400) / 900) .. "|" .. (s.waba or "") .. "|" .. (s.pn or "") .. "|" .. metric .. "|" .. (dims or "")
  local key = counter_prefix .. day
  redis.call("HINCRBY", key, field, 1)
  redis.call("EXPIREAT", key, (day + 1) * 86400 + counter_ttl)
  return day, field
end

-- the customer service window ------------------------------------------------------------
local function csw_close(closed_at, reason)
  emit("service_window.closed", {s.csw_opened, s.csw_expires, closed_at}, closed_at,
       {opened_at = tonumber(s.csw_opened), expires_at = tonumber(s.csw_expires), closed_at = closed_at, reason = reason})
  set("csw_closed", 1)
end

local function inbound(ts)
  local expires = tonumber(s.csw_expires)
  local new_expires = ts + csw_len
  if expires == nil or ts >= expires then
    if expires ~= nil and s.csw_closed ~= "1" then csw_close(expires, "expired") end
    set("csw_opened", ts); set("csw_expires", new_expires); set("csw_closed", 0); set("csw_warned", 0)
    emit("service_window.opened", {ts}, ts, {opened_at = ts, expires_at = new_expires})
    count(ts, "service_windows_opened")
  elseif new_expires > expires then
    -- a later message moves the end; a window the clock had already closed is open again,
    -- since Meta's timestamps show it never lapsed
    set("csw_expires", new_expires); set("csw_closed", 0); set("csw_warned", 0)
    emit("service_window.extended", {s.csw_opened, new_expires}, ts,
         {opened_at = tonumber(s.csw_opened), expires_at = new_expires})
  end
  -- else: a late, older message; it never shortens the window
end

-- opt-out ------------------------------------------------------------------------------------
local function opt_out(ts, field, value, reason)
  local current = s[field] == "1"
  if current == value then return end
  local last = tonumber(s[field .. "_at"] or "0")
  if ts < last then return end -- an older preference never overrides a newer one
  set(field, value and 1 or 0); set(field .. "_at", ts)
  emit("opt_out.changed", {field, tostring(value), ts}, ts, {
    marketing_opt_out = s.marketing_opt_out == "1", opted_out = s.opted_out == "1", reason = reason,
  })
end

-- outbound statuses: order and the pricing ledger ----------------------------------------------
local RANK = {sent = 1, delivered = 2, read = 3, played = 4, failed = 9}

local function billable(ptype)
  if ptype == "unknown" then return "unknown" end
  if ptype == "regular" then return "true" end
  if string.sub(ptype, 1, 5) == "free_" then return "false" end
  return "unknown"
end

local function status(ts, d)
  local wamid = d.wamid
  local rec = {rank = 0, counted = 0, cat = "", typ = "", day = "", field = ""}
  local raw = redis.call("HGET", ledger, wamid)
  if raw then rec = cjson.decode(raw) end
  local rank = RANK[d.status] or 0
  local learned = false
  if d.pricing ~= nil and rec.cat == "" then
    rec.cat = d.pricing.category or "unknown"
    rec.typ = d.pricing.type or "unknown"
    learned = true
  end
  if rank > rec.rank and rec.rank ~= 9 then rec.rank = rank end -- forward only; failed is terminal

  local delivered = d.status == "delivered" or d.status == "read" or d.status == "played"
  if delivered and rec.counted == 0 then
    local cat, typ = rec.cat ~= "" and rec.cat or "unknown", rec.typ ~= "" and rec.typ or "unknown"
    local day, field = count(ts, "messages_delivered", cat .. "|" .. typ .. "|" .. billable(typ))
    rec.counted, rec.day, rec.field = 1, day, field
  elseif learned and rec.counted == 1 and string.find(rec.field, "|unknown|unknown|unknown$") then
    -- counted at delivery before its pricing was known: move it, so totals stay exact
    local key = counter_prefix .. rec.day
    redis.call("HINCRBY", key, rec.field, -1)
    local moved = string.gsub(rec.field, "unknown|unknown|unknown$", rec.cat .. "|" .. rec.typ .. "|" .. billable(rec.typ))
    redis.call("HINCRBY", key, moved, 1)
    rec.field = moved
  end
  redis.call("HSET", ledger, wamid, cjson.encode(rec))
  redis.call("EXPIRE", ledger, dedupe_ttl)

  if d.status == "failed" and d.errors ~= nil then
    for _, err in ipairs(d.errors) do
      if err.code == 131047 then
        -- Meta says the window is closed: correct ourselves if we thought it open
        local expires = tonumber(s.csw_expires)
        if expires ~= nil and s.csw_closed ~= "1" and ts < expires then
          csw_close(ts, "meta_131047")
          set("csw_expires", ts)
          count(ts, "csw_corrections")
        end
      elseif err.code == 131050 then
        opt_out(ts, "marketing_opt_out", true, "meta_131050")
      end
    end
  end
end

-- dispatch -------------------------------------------------------------------------------------
local d, ts = ev.data, ev.timestamp
if ev.kind == "message" then
  if d.type ~= "system" then
    inbound(ts)
    count(ts, "inbound_messages")
    if d.opt_out_keyword ~= nil then opt_out(ts, "opted_out", true, "keyword") end
  end
elseif ev.kind == "status" then
  status(ts, d)
elseif ev.kind == "user_preference" then
  if d.category == "marketing_messages" and (d.value == "stop" or d.value == "resume") then
    opt_out(ts, "marketing_opt_out", d.value == "stop", "user_preferences")
  end
end

-- store, schedule the next deadline, keep memory bounded -------------------------------------
if #changed > 0 then redis.call("HSET", state, unpack(changed)) end

local expires = tonumber(s.csw_expires)
if expires ~= nil and s.csw_closed ~= "1" then
  local next_due = expires
  local warned = tonumber(s.csw_warned or "0")
  for i = warned + 1, #offsets do
    if expires - offsets[i] < next_due then next_due = expires - offsets[i]; break end
  end
  redis.call("ZADD", due, next_due, ckey)
else
  redis.call("ZREM", due, ckey)
end

local keep_until = now + grace
if expires ~= nil and expires + grace > keep_until then keep_until = expires + grace end
if s.marketing_opt_out == "1" or s.opted_out == "1" then keep_until = now + counter_ttl end
redis.call("EXPIREAT", state, keep_until)

if #transitions == 0 then return "[]" end
local encoded = cjson.encode(transitions)
redis.call("HSET", outbox, outbox_field, encoded)
redis.call("ZADD", outq, now, outbox_field)
return encoded
