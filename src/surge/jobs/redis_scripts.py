"""The Lua scripts of the Redis Streams broker, each one atomic on the server. Job hashes are
addressed as PREFIX .. 'job:' .. id inside the scripts, so this broker targets a single Redis
(or a cluster with hash tags in the prefix), not a sharded keyspace."""

from __future__ import annotations

ACTIVE = "queued scheduled running retrying unknown"

# KEYS: job hash, stream, waiting zset (for a scheduled job), idempotency key (or the job hash
# again when there is none), queue set
# ARGV: id, state, run_at, queue, has_key, field, value, field, value, ...
# Returns the stored job (the existing one when the key is held) as a flat field/value list.
ENQUEUE = f"""
local active = '{ACTIVE}'
if ARGV[5] == '1' then
  local holder = redis.call('GET', KEYS[4])
  if holder then
    local found = redis.call('HGETALL', string.sub(KEYS[1], 1, -#ARGV[1] - 1) .. holder)
    for i = 1, #found, 2 do
      if found[i] == 'state' and string.find(active, found[i + 1], 1, true) then
        return found
      end
    end
  end
  redis.call('SET', KEYS[4], ARGV[1])
end
redis.call('HSET', KEYS[1], unpack(ARGV, 6))
if ARGV[2] == 'queued' then
  redis.call('XADD', KEYS[2], '*', 'id', ARGV[1])
else
  redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1])
end
redis.call('SADD', KEYS[5], ARGV[4])
return {{}}
"""

# KEYS: stream, then the waiting zsets of that queue
# ARGV: now, job hash prefix, max jobs to move per zset
# Moves due scheduled/retrying/unknown jobs onto the stream as 'queued'. Returns how many.
MOVE_DUE = """
local moved = 0
for k = 2, #KEYS do
  local due = redis.call('ZRANGEBYSCORE', KEYS[k], '-inf', ARGV[1], 'LIMIT', 0, ARGV[3])
  for _, id in ipairs(due) do
    redis.call('ZREM', KEYS[k], id)
    redis.call('HSET', ARGV[2] .. id, 'state', 'queued')
    redis.call('XADD', KEYS[1], '*', 'id', id)
    moved = moved + 1
  end
end
return moved
"""

# KEYS: stream
# ARGV: group, worker, now, job hash prefix, then entry id, job id pairs
# Marks delivered jobs running (attempts + 1) and returns each one's fields; entries of jobs
# that were cancelled or have vanished are acknowledged and dropped.
TAKE = """
local out = {}
for i = 5, #ARGV, 2 do
  local entry, job = ARGV[i], ARGV[4] .. ARGV[i + 1]
  local state = redis.call('HGET', job, 'state')
  if (not state) or state == 'cancelled' or state == 'succeeded' or state == 'dead' then
    redis.call('XACK', KEYS[1], ARGV[1], entry)
    redis.call('XDEL', KEYS[1], entry)
  else
    redis.call('HINCRBY', job, 'attempts', 1)
    redis.call('HSET', job, 'state', 'running', 'worker', ARGV[2], 'started_at', ARGV[3],
               'delivery', entry)
    out[#out + 1] = redis.call('HGETALL', job)
  end
end
return out
"""

# KEYS: job hash, waiting zsets of its queue (scheduled, retrying, unknown)
# ARGV: now, ttl seconds, idempotency key name (or '')
CANCEL = f"""
local state = redis.call('HGET', KEYS[1], 'state')
if (not state) or state == 'running' or not string.find('{ACTIVE}', state, 1, true) then
  return 0
end
redis.call('HSET', KEYS[1], 'state', 'cancelled', 'finished_at', ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
for k = 2, #KEYS do redis.call('ZREM', KEYS[k], string.match(KEYS[1], 'job:(.*)$')) end
if ARGV[3] ~= '' then redis.call('DEL', ARGV[3]) end
return 1
"""

# KEYS: job hash, dead zset, stream
# ARGV: job id, now
RETRY_DEAD = """
if redis.call('HGET', KEYS[1], 'state') ~= 'dead' then return 0 end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HSET', KEYS[1], 'state', 'queued', 'attempts', 0, 'run_at', ARGV[2])
redis.call('HDEL', KEYS[1], 'key', 'finished_at')
redis.call('XADD', KEYS[3], '*', 'id', ARGV[1])
return 1
"""

# KEYS: stream
# ARGV: group, ttl seconds, key prefix, then job id, entry id, finished_at, result JSON per job
# The common outcome in one call: succeeded, kept `ttl`, entry acknowledged and deleted,
# idempotency key released.
SETTLE_SUCCEEDED = """
for i = 4, #ARGV, 4 do
  local job = ARGV[3] .. 'job:' .. ARGV[i]
  redis.call('HSET', job, 'state', 'succeeded', 'finished_at', ARGV[i + 2],
             'result', ARGV[i + 3])
  redis.call('EXPIRE', job, ARGV[2])
  redis.call('XACK', KEYS[1], ARGV[1], ARGV[i + 1])
  redis.call('XDEL', KEYS[1], ARGV[i + 1])
  local key = redis.call('HGET', job, 'key')
  if key then redis.call('DEL', ARGV[3] .. 'key:' .. key) end
end
return 0
"""
