--[[
Helpers shared by the engine's scripts; the store prepends this file to apply.lua, close.lua
and link.lua when it loads them. Everything here is local to the script it joins.

Conversation state (one HASH) holds:
  waba, user_id, wa_id              who the conversation is (the number is in the key)
  csw_opened, csw_expires           the customer service window, Meta's Unix seconds
  csw_closed, csw_warned            1 once its close was published; closing_soon offsets sent
                                    (absent means 0: every byte counts per conversation)
  ref_at                            the last inbound message that came from an ad (referral)
  fep_opened, fep_expires, fep_closed, fep_src   the free entry point window
  cv:<category>                     an open conversation, JSON {o, e, i, t, src, id, day, f}
  marketing_opt_out(_at), opted_out(_at)
]]

-- the state of conversation `ckey`; its number is part of the key, not stored
-- A shard's deadline index and outbox hold only entries due or acknowledged within days of
-- their last write (windows last at most a few days), so a TTL well past that, refreshed on
-- every write, never drops a live entry and lets an idle shard's keys go.
local SHARD_KEY_TTL = 9 * 86400

local function load_state(key, ckey)
  local s = {}
  local flat = redis.call("HGETALL", key)
  for i = 1, #flat, 2 do s[flat[i]] = flat[i + 1] end
  if #flat > 0 then s.pn = string.match(ckey, "^([^:]+):") end
  return s
end

local function parse_offsets(csv)
  local offsets = {}
  for off in string.gmatch(csv, "[^,]+") do offsets[#offsets + 1] = tonumber(off) end
  return offsets
end

-- a transition: `id` is a hash of the conversation, the type and the window's times, so the
-- same transition always gets the same id
local function transition(ckey, s, kind, id_parts, time, data)
  return {
    type = kind, id = redis.sha1hex(ckey .. "|" .. kind .. "|" .. table.concat(id_parts, "|")),
    time = time, data = data, key = ckey,
    waba = s.waba, pn = s.pn, user_id = s.user_id, wa_id = s.wa_id,
  }
end

local function new_emitter(ckey, s)
  local transitions = {}
  local function emit(kind, id_parts, time, data)
    transitions[#transitions + 1] = transition(ckey, s, kind, id_parts, time, data)
  end
  return transitions, emit
end

-- open conversations, by category
local function conversations(s)
  local out = {}
  for field, raw in pairs(s) do
    if string.sub(field, 1, 3) == "cv:" then out[string.sub(field, 4)] = cjson.decode(raw) end
  end
  return out
end

-- what a conversation event carries; `closed_at` only on its close
local function conversation_data(c, category, closed_at)
  return {category = category, initiator = c.i, type = c.t, source = c.src, conversation_id = c.id,
          opened_at = c.o, expires_at = c.e, closed_at = closed_at}
end

-- the next moment something is due: a closing_soon warning, a window's or a conversation's end
local function next_due(s, offsets)
  local due = nil
  local function consider(t) if t ~= nil and (due == nil or t < due) then due = t end end
  local expires = tonumber(s.csw_expires)
  if expires ~= nil and s.csw_closed ~= "1" then
    local warned = tonumber(s.csw_warned or "0")
    if warned < #offsets then consider(expires - offsets[warned + 1]) else consider(expires) end
  end
  if s.fep_expires ~= nil and s.fep_closed ~= "1" then consider(tonumber(s.fep_expires)) end
  for _, c in pairs(conversations(s)) do consider(c.e) end
  return due
end

local function schedule(due_key, ckey, s, offsets)
  local due = next_due(s, offsets)
  if due == nil then
    redis.call("ZREM", due_key, ckey)
  else
    redis.call("ZADD", due_key, due, ckey)
    redis.call("EXPIRE", due_key, SHARD_KEY_TTL)
  end
end

-- close every conversation and the free entry point window whose end is at or before `now`
local function close_expired(s, now, emit, hdel)
  for category, c in pairs(conversations(s)) do
    if c.e <= now then
      emit("conversation.closed", {category, c.o, c.e}, c.e, conversation_data(c, category, c.e))
      s["cv:" .. category] = nil
      hdel("cv:" .. category)
    end
  end
  local fep_expires = tonumber(s.fep_expires)
  if fep_expires ~= nil and s.fep_closed ~= "1" and fep_expires <= now then
    emit("entry_point_window.closed", {s.fep_opened, fep_expires}, fep_expires,
         {opened_at = tonumber(s.fep_opened), expires_at = fep_expires, closed_at = fep_expires, source = s.fep_src})
    s.fep_closed = "1"
  end
end

local function save_outbox(outbox, outq, field, transitions, now)
  if #transitions == 0 then return "[]" end
  local encoded = cjson.encode(transitions)
  redis.call("HSET", outbox, field, encoded)
  redis.call("ZADD", outq, now, field)
  redis.call("EXPIRE", outbox, SHARD_KEY_TTL)
  redis.call("EXPIRE", outq, SHARD_KEY_TTL)
  return encoded
end

-- a user's state lives a grace period past the latest end it knows; while they opted out, at
-- least until `opted_out_until` (their decision must outlive their windows)
local function expire_state(key, s, now, grace, opted_out_until)
  local keep_until = now + grace
  local function keep(t) if t ~= nil and t + grace > keep_until then keep_until = t + grace end end
  keep(tonumber(s.csw_expires))
  keep(tonumber(s.fep_expires))
  for _, c in pairs(conversations(s)) do keep(c.e) end
  if (s.marketing_opt_out == "1" or s.opted_out == "1") and opted_out_until > keep_until then
    keep_until = opted_out_until
  end
  redis.call("EXPIREAT", key, keep_until)
end
