-- GCRA for one key, all of its limits at once, atomically, on Redis server time: the default
-- algorithm's script, kept to the bare steps (it costs about half of decide.lua at the
-- server). Mirrors `_multi_gcra` in surge/ratelimit/algorithms.py. redis_store.py writes one
-- script per policy: the placeholders (__EPOCH__, __FIELDS__, ...) become constants, so a call
-- sends only KEYS[1], the key's hash, and ARGV[1], the cost. Reply as decide.lua's.
local t = redis.call('TIME')
local now = (tonumber(t[1]) - __EPOCH__) + tonumber(t[2]) / 1000000
local cost, EPS = tonumber(ARGV[1]), __EPSILON__
local fields, limits, periods = {__FIELDS__}, {__LIMITS__}, {__PERIODS__}
local n, entries = #fields, {}
local raw = redis.call('HMGET', KEYS[1], unpack(fields))
local allowed, retry, best_left, best_reset, best_i = 1, 0, math.huge, 0, 0
for i = 1, n do
  local limit, period = limits[i], periods[i]
  local interval = period / limit
  local base = tonumber(raw[i])
  if not base or base < now then base = now end
  local new_tat = base + cost * interval
  local earliest = new_tat - period
  local left, reset
  if earliest > now + EPS then
    allowed = 0
    local wait = __NEVER__
    if cost <= limit then wait = math.ceil((earliest - now) * 1000000 - 0.5) end
    if wait == __NEVER__ or retry == __NEVER__ then retry = __NEVER__
    elseif wait > retry then retry = wait end
    left, reset = math.floor((period - (base - now)) / interval + EPS), base - now
  else
    left, reset = math.floor((now - earliest) / interval + EPS), new_tat - now
  end
  entries[2 * i - 1] = fields[i]; entries[2 * i] = string.format('%.17g', new_tat)
  if left < best_left or (left == best_left and reset > best_reset) then
    best_left, best_reset, best_i = left, reset, i - 1
  end
end
if allowed == 1 then
  retry = 0
  if cost > 0 then
    redis.call('HSET', KEYS[1], unpack(entries))
    redis.call('PEXPIRE', KEYS[1], __TTL__)
  end
end
return redis.status_reply(string.format('%d %d %d %d %d 0', allowed, best_left,
  math.ceil(best_reset * 1000000 - 0.5), retry, best_i))
