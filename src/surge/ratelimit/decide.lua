-- One rate limit decision for one key, atomically, on Redis server time, for the window
-- algorithms and shaping (GCRA, the default, has its own leaner gcra.lua).
-- Mirrors surge/ratelimit/algorithms.py; placeholders (__EPOCH__, ...) are filled in by
-- redis_store.py. KEYS[1]: the key's hash. ARGV[1]: the cost; ARGV[2]: the policy,
-- space-separated: algorithm, max_delay, ttl_ms, n, then n x (field, limit, period). Reply, one
-- status line (the cheapest reply to send and parse): "allowed remaining reset_us retry_us
-- index delay_us", retry_us being __NEVER__ when the request can never pass, index 0-based.
local t = redis.call('TIME')
local now = (tonumber(t[1]) - __EPOCH__) + tonumber(t[2]) / 1000000
local spec = {}
for word in string.gmatch(ARGV[2], '%S+') do spec[#spec + 1] = word end
local alg, max_delay, ttl, n = spec[1], tonumber(spec[2]), tonumber(spec[3]), tonumber(spec[4])
local cost = tonumber(ARGV[1])
local EPS = __EPSILON__
local fields, limits, periods = {}, {}, {}
for i = 1, n do
  fields[i] = spec[3 * i + 2]; limits[i] = tonumber(spec[3 * i + 3])
  periods[i] = tonumber(spec[3 * i + 4])
end
local raw = redis.call('HMGET', KEYS[1], unpack(fields))
local function fmt(x) return string.format('%.17g', x) end
local function us(x) return math.ceil(x * 1000000 - 0.5) end
local function reply(allowed, left, reset_us, retry_us, index, delay_us)
  return redis.status_reply(string.format('%d %d %d %d %d %d',
    allowed, left, reset_us, retry_us, index, delay_us))
end

local function write(entries)
  local args = {}
  for i = 1, n do args[2 * i - 1] = fields[i]; args[2 * i] = entries[i] end
  redis.call('HSET', KEYS[1], unpack(args))
  redis.call('PEXPIRE', KEYS[1], ttl)
end

if alg == 'shaping' then
  local depart, idx, slow = now, 1, 0
  for i = 1, n do
    local tat = tonumber(raw[i])
    if tat and tat > depart then depart = tat end
    local iv = periods[i] / limits[i]
    if iv > slow then slow = iv; idx = i end
  end
  local delay = depart - now
  if delay > max_delay + EPS then
    return reply(0, 0, us(delay), us(delay - max_delay), idx - 1, 0)
  end
  if cost == 0 then
    return reply(1, math.floor((max_delay - delay) / slow + EPS) + 1, us(delay), 0, idx - 1, us(delay))
  end
  local queued = delay + cost * slow
  local left = math.max(0, math.floor((max_delay - queued) / slow + EPS) + 1)
  local entries = {}
  for i = 1, n do entries[i] = fmt(depart + cost * periods[i] / limits[i]) end
  write(entries)
  return reply(1, left, us(queued), 0, idx - 1, us(delay))
end

local function fixed(s, limit, period)
  local window = math.floor(now / period)
  local count = 0
  if s then
    local w, c = string.match(s, '(%S+) (%S+)')
    if tonumber(w) == window then count = tonumber(c) end
  end
  local reset = (window + 1) * period - now
  if count + cost > limit then
    local retry = __NEVER__
    if cost <= limit then retry = us(reset) end
    return false, s, math.max(0, limit - count), reset, retry
  end
  count = count + cost
  return true, fmt(window) .. ' ' .. count, limit - count, reset, 0
end

local function sliding(s, limit, period)
  local window = math.floor(now / period)
  local previous, current = 0, 0
  if s then
    local w, p, c = string.match(s, '(%S+) (%S+) (%S+)')
    w = tonumber(w)
    if w == window then previous = tonumber(p); current = tonumber(c)
    elseif w == window - 1 then previous = tonumber(c) end
  end
  local elapsed = now - window * period
  local used = previous * (1.0 - elapsed / period) + current
  local reset = 0
  if current > 0 then reset = 2 * period - elapsed
  elseif previous > 0 then reset = period - elapsed end
  if used + cost > limit + EPS then
    local retry
    if cost > limit then retry = __NEVER__
    elseif previous > 0 and current + cost <= limit then
      retry = us((current + cost - limit) / previous * period + period - elapsed)
    else
      local wait = period - elapsed
      if current + cost > limit then wait = wait + (current + cost - limit) / current * period end
      retry = us(wait)
    end
    return false, s, math.max(0, math.floor(limit - used + EPS)), reset, retry
  end
  current = current + cost
  local left = math.max(0, math.floor(limit - used - cost + EPS))
  return true, fmt(window) .. ' ' .. previous .. ' ' .. current, left, 2 * period - elapsed, 0
end

local step = sliding
if alg == 'fixed_window' then step = fixed end
local entries, allowed, retry = {}, true, 0
local best_left, best_reset, best_i = math.huge, 0, 0
for i = 1, n do
  local ok, entry, left, reset, wait = step(raw[i], limits[i], periods[i])
  entries[i] = entry
  if not ok then
    allowed = false
    if wait == __NEVER__ or retry == __NEVER__ then retry = __NEVER__
    elseif wait > retry then retry = wait end
  end
  if left < best_left or (left == best_left and reset > best_reset) then
    best_left, best_reset, best_i = left, reset, i - 1
  end
end
if not allowed then return reply(0, best_left, us(best_reset), retry, best_i, 0) end
if cost > 0 then write(entries) end
return reply(1, best_left, us(best_reset), 0, best_i, 0)
