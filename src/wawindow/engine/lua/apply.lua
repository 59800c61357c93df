--[[
Applies a conversation's events, in order, atomically. (common.lua is prepended to this file
when it is loaded.)

KEYS[1]  conversation state (HASH; also holds the applied event ids, as "s:<digest>" fields)
KEYS[2]  outbound message ledger (HASH)     KEYS[3]  shard deadline index (ZSET)
KEYS[4]  shard outbox (HASH)                KEYS[5]  shard outbox queue (ZSET)
All keys share the shard's hash tag, so this runs unchanged on Redis Cluster.

ARGV[1]  the events, a JSON array of events as on webhook-events, all of this conversation
ARGV[2]  now: wall-clock Unix seconds (outbox queue and TTLs only; rules use Meta's time)
ARGV[3]  counter key prefix of the shard (same hash tag); "<prefix><epoch day>" is a day's HASH
ARGV[4]  the conversation key (the events' own, or the key their user's state was linked to)

The settings (window lengths, closing_soon offsets, TTLs) are constants the store writes
into the script when it loads it (see CONFIG below), so each call carries only the above.

Returns a JSON array with one element per event: the array of window transitions it caused
("[]" for none), or {"error": reason} for an event that cannot be applied (the others are).
A repeat of an applied event changes nothing; its element is the transitions of its first
application while they are still in the outbox (not yet acknowledged by Kafka), so a crash
between this script and the publish never loses a transition, and the repeat carries the
same ids.
]]

local state, ledger, due, outbox, outq = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local events = cjson.decode(ARGV[1])
local now = tonumber(ARGV[2])
local counter_prefix = ARGV[3]
local ckey = ARGV[4]
-- CONFIG, written in at load time
local csw_len, fep_len = @CSW_SECONDS@, @FEP_SECONDS@
local offsets = parse_offsets("@OFFSETS@")
local grace, dedupe_ttl, counter_ttl = @GRACE_SECONDS@, @DEDUPE_SECONDS@, @COUNTER_SECONDS@
local DAY = 86400

local s = load_state(state, ckey)
local dirty = {} -- field -> new value, or false to delete; written once at the end
local function unset(field)
  s[field] = nil
  dirty[field] = false
end
local function set(field, value)
  -- flags and counts at 0 are not stored: absent means 0
  if value == 0 and (field == "csw_closed" or field == "csw_warned" or field == "fep_closed") then
    unset(field)
    return
  end
  s[field] = tostring(value)
  dirty[field] = tostring(value)
end
local function present(v) return v ~= nil and v ~= cjson.null end
s.pn = string.match(ckey, "^([^:]+):")

-- the transitions of the event being applied
local current = {}
local notes = {} -- what this event corrected or repeated, for the worker's metrics
local function note(what) notes[#notes + 1] = what end
local function emit(kind, id_parts, time, data)
  current[#current + 1] = transition(ckey, s, kind, id_parts, time, data)
end

local function count(ts, metric, dims)
  local day = math.floor(ts / DAY)
  local field = math.floor((ts % DAY) / 900) .. "|" .. (s.waba or "") .. "|" .. (s.pn or "") .. "|" .. metric .. "|" .. (dims or "")
  local key = counter_prefix .. day
  redis.call("HINCRBY", key, field, 1)
  redis.call("EXPIREAT", key, (day + 1) * DAY + counter_ttl)
  return day, field
end

local function move_count(day, field, new_field)
  local key = counter_prefix .. day
  redis.call("HINCRBY", key, field, -1)
  redis.call("HINCRBY", key, new_field, 1)
end

-- the customer service window ------------------------------------------------------------
local function csw_close(closed_at, reason)
  emit("service_window.closed", {s.csw_opened, s.csw_expires, closed_at}, closed_at,
       {opened_at = tonumber(s.csw_opened), expires_at = tonumber(s.csw_expires), closed_at = closed_at, reason = reason})
  set("csw_closed", 1)
end

local function csw_open_at(ts)
  local o, e = tonumber(s.csw_opened), tonumber(s.csw_expires)
  return o ~= nil and e ~= nil and o <= ts and ts < e
end

local function inbound(ts, d)
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
  if expires ~= nil and new_expires < expires then note("out_of_order") end
  if present(d.referral) and ts > tonumber(s.ref_at or "0") then set("ref_at", ts) end
end

-- opt-out ------------------------------------------------------------------------------------
local function opt_out(ts, field, value, reason)
  if (s[field] == "1") == value then return end
  if ts < tonumber(s[field .. "_at"] or "0") then return end -- an older decision never wins
  set(field, value and 1 or 0); set(field .. "_at", ts)
  emit("opt_out.changed", {field, tostring(value), ts}, ts, {
    marketing_opt_out = s.marketing_opt_out == "1", opted_out = s.opted_out == "1", reason = reason,
  })
end

-- conversations and the free entry point window ------------------------------------------------
local TEMPLATE = {marketing = true, marketing_lite = true, utility = true, authentication = true,
                  ["authentication-international"] = true, authentication_international = true}
local HISTORIC = {user_initiated = "user", business_initiated = "business"}

local function close_conversation(category, c, at)
  emit("conversation.closed", {category, c.o, c.e}, at, conversation_data(c, category, at))
  unset("cv:" .. category)
end

local function open_conversation(category, ts, expires, initiator, ctype, source, meta_id)
  local c = {o = ts, e = expires, i = initiator, t = ctype, src = source, id = meta_id}
  c.day, c.f = count(ts, "conversations_opened", category .. "|" .. initiator .. "|" .. ctype .. "|" .. source)
  set("cv:" .. category, cjson.encode(c))
  emit("conversation.opened", {category, ts}, ts, conversation_data(c, category))
  return c
end

local function fep_open_at(ts)
  local o, e = tonumber(s.fep_opened), tonumber(s.fep_expires)
  return o ~= nil and e ~= nil and s.fep_closed ~= "1" and o <= ts and ts < e
end

-- A reply within 24 h of a message from an ad opens the free entry point window at the reply;
-- Meta's own word (pricing type free_entry_point, origin referral_conversion) opens it too,
-- and Meta's expiration_timestamp is its authoritative end.
local function entry_point(ts, d, rec)
  local conv = d.conversation or {}
  local meta = (d.pricing ~= nil and d.pricing.type == "free_entry_point") or conv.origin_type == "referral_conversion"
  local meta_end = conv.expiration_timestamp
  if fep_open_at(ts) then
    if meta and meta_end ~= nil and s.fep_src ~= "meta" then
      set("fep_expires", meta_end); set("fep_src", "meta")
      local c = conversations(s).referral_conversion
      if c ~= nil then c.e, c.src, c.id = meta_end, "meta", conv.id; set("cv:referral_conversion", cjson.encode(c)) end
    end
    return
  end
  local ref = tonumber(s.ref_at)
  local replied = ref ~= nil and ts >= ref and ts <= ref + DAY
  if not replied and not meta then return end
  local expires = meta_end or ts + fep_len
  local source = meta_end ~= nil and "meta" or "derived"
  set("fep_opened", ts); set("fep_expires", expires); set("fep_closed", 0); set("fep_src", source)
  unset("ref_at")
  emit("entry_point_window.opened", {ts}, ts, {opened_at = ts, expires_at = expires, source = source})
  count(ts, "entry_point_windows_opened")
  -- a free entry point conversation closes the others
  for category, c in pairs(conversations(s)) do close_conversation(category, c, ts) end
  open_conversation("referral_conversion", ts, expires, "user", "free_entry_point", source, conv.id)
  rec.cv = "referral_conversion"
end

-- Meta's CBP rule, kept as finance's unit: a delivered business message opens a 24 h
-- conversation unless one that absorbs it is open (same category for a template, any
-- category for a non-template message).
local function on_delivery(ts, d, rec)
  if fep_open_at(ts) then rec.cv = "referral_conversion"; return end
  local category, initiator = nil, nil
  if rec.cat ~= "" and rec.cat ~= "unknown" then category = rec.cat end
  if category == nil and rec.origin ~= nil then category = rec.origin end
  if category ~= nil and HISTORIC[category] then initiator, category = HISTORIC[category], nil end
  local in_csw = csw_open_at(ts)
  if category == nil then category = in_csw and "service" or "unknown" end
  if category == "referral_conversion" then return end
  initiator = initiator or (in_csw and "user" or "business")

  local open = conversations(s)
  for cat, c in pairs(open) do
    if c.e <= ts then close_conversation(cat, c, c.e); open[cat] = nil end
  end
  -- Meta's conversation id wins in the CBP era (after it, ids are per message)
  local meta_id = rec.cbp and rec.mid or nil
  local absorber = nil
  if TEMPLATE[category] then absorber = open[category]
  else for cat, c in pairs(open) do absorber = absorber or c end end
  if meta_id ~= nil then
    local by_meta = nil
    for _, c in pairs(open) do if c.id == meta_id then by_meta = c end end
    if (absorber ~= nil) ~= (by_meta ~= nil) then
      count(ts, "conversation_disagreements")
      note("disagreement")
    end
    if by_meta ~= nil then rec.cv = "meta"; return end
  elseif absorber ~= nil then
    rec.cv = "absorbed"
    return
  end
  if open[category] ~= nil then close_conversation(category, open[category], ts) end
  local expires = ts + DAY
  local source = "derived"
  if meta_id ~= nil then source = "meta"; expires = rec.mexp or expires end
  open_conversation(category, ts, expires, initiator, "regular", source, meta_id)
  rec.cv = category
end

-- a conversation opened before its message's category was known takes the category later;
-- its count moves, so totals stay exact
local function learn_category(rec)
  if rec.cv ~= "unknown" or rec.cat == "" or rec.cat == "unknown" or rec.cat == "referral_conversion" then return end
  local open = conversations(s)
  local c = open.unknown
  if c == nil or open[rec.cat] ~= nil then return end
  local new_field = string.gsub(c.f, "|conversations_opened|unknown|", "|conversations_opened|" .. rec.cat .. "|")
  move_count(c.day, c.f, new_field)
  c.f = new_field
  unset("cv:unknown")
  set("cv:" .. rec.cat, cjson.encode(c))
  rec.cv = rec.cat
end

-- outbound statuses: order and the pricing ledger ----------------------------------------------
local RANK = {sent = 1, delivered = 2, read = 3, played = 4, failed = 9}

local function billable(ptype)
  if ptype == "regular" then return "true" end
  if string.sub(ptype, 1, 5) == "free_" then return "false" end
  return "unknown"
end

local function status(ts, d)
  local wamid = d.wamid
  local rec = {rank = 0, counted = 0, cat = "", typ = "", day = "", field = ""}
  local raw = redis.call("HGET", ledger, wamid)
  if raw then rec = cjson.decode(raw) end
  local learned = false
  if d.pricing ~= nil and rec.cat == "" then
    rec.cat = d.pricing.category or "unknown"
    rec.typ = d.pricing.type or "unknown"
    learned = true
  end
  if d.pricing ~= nil and d.pricing.pricing_model == "CBP" then rec.cbp = true end
  if d.conversation ~= nil then
    rec.origin = rec.origin or d.conversation.origin_type
    rec.mid = rec.mid or d.conversation.id
    rec.mexp = rec.mexp or d.conversation.expiration_timestamp
  end
  local rank = RANK[d.status] or 0
  if rank > 0 and rank < rec.rank then note("out_of_order") end -- never downgraded
  if rank > rec.rank and rec.rank ~= 9 then rec.rank = rank end -- forward only; failed is terminal

  if d.status ~= "failed" then entry_point(ts, d, rec) end
  local delivered = d.status == "delivered" or d.status == "read" or d.status == "played"
  if delivered and rec.counted == 0 then
    local cat, typ = rec.cat ~= "" and rec.cat or "unknown", rec.typ ~= "" and rec.typ or "unknown"
    local day, field = count(ts, "messages_delivered", cat .. "|" .. typ .. "|" .. billable(typ))
    rec.counted, rec.day, rec.field = 1, day, field
    if rec.cv == nil then on_delivery(ts, d, rec) end
  elseif learned and rec.counted == 1 and string.find(rec.field, "|unknown|unknown|unknown$") then
    -- counted at delivery before its pricing was known: move it, so totals stay exact
    local moved = string.gsub(rec.field, "unknown|unknown|unknown$", rec.cat .. "|" .. rec.typ .. "|" .. billable(rec.typ))
    move_count(rec.day, rec.field, moved)
    rec.field = moved
  end
  if learned then learn_category(rec) end
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
          note("csw_correction")
        end
      elseif err.code == 131050 then
        opt_out(ts, "marketing_opt_out", true, "meta_131050")
      end
    end
  end
end

-- each event in turn ---------------------------------------------------------------------------
local function apply_one(ev)
  -- validate before any write: Redis does not roll back a script that fails half-way
  if type(ev) ~= "table" or type(ev.event_id) ~= "string" or type(ev.data) ~= "table" then
    return {error = "event without event_id or data"}
  end
  if (ev.kind == "message" or ev.kind == "status" or ev.kind == "user_preference") and type(ev.timestamp) ~= "number" then
    return {error = "event " .. ev.event_id .. " has no numeric timestamp"}
  end
  -- dedupe: a 48-bit digest of the event id, a small field of the state hash (no key of its
  -- own), stamped with the wall clock and kept as long as Meta may re-send
  local outbox_field = ckey .. "|" .. ev.event_id
  local digest = "s:" .. string.sub(redis.sha1hex(ev.event_id), 1, 12)
  if s[digest] ~= nil then
    local pending = redis.call("HGET", outbox, outbox_field)
    return {t = pending and cjson.decode(pending) or {}, n = {"duplicate"}}
  end
  set(digest, now)

  local user = ev.user
  if present(user) then
    if present(user.user_id) and s.user_id ~= user.user_id then set("user_id", user.user_id) end
    if present(user.wa_id) and s.wa_id ~= user.wa_id then set("wa_id", user.wa_id) end
  end
  if s.waba ~= ev.waba_id then set("waba", ev.waba_id) end

  current, notes = {}, {}
  local d, ts = ev.data, ev.timestamp
  if ev.kind == "message" then
    if d.type ~= "system" then
      inbound(ts, d)
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
  save_outbox(outbox, outq, outbox_field, current, now)
  return {t = current, n = notes}
end

local results = {}
for i, ev in ipairs(events) do results[i] = apply_one(ev) end

do -- forget ids older than Meta's retries once a chatty conversation has gathered many
  local ids, old = 0, {}
  for field, at in pairs(s) do
    if string.sub(field, 1, 2) == "s:" then
      ids = ids + 1
      if tonumber(at) < now - dedupe_ttl then old[#old + 1] = field end
    end
  end
  if ids > 32 then for _, field in ipairs(old) do unset(field) end end
end

-- store, schedule the next deadline, keep memory bounded -------------------------------------
local writes, deletes = {}, {}
for field, value in pairs(dirty) do
  if value then writes[#writes + 1] = field; writes[#writes + 1] = value else deletes[#deletes + 1] = field end
end
if #writes > 0 then redis.call("HSET", state, unpack(writes)) end
if #deletes > 0 then redis.call("HDEL", state, unpack(deletes)) end
schedule(due, ckey, s, offsets)

-- state lives a grace period past the latest end it knows (as long as counters while opted out)
expire_state(state, s, now, grace, now + counter_ttl)

return cjson.encode(results)
