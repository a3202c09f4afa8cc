"""The atomic steps of a coordinated run, as Lua scripts (one round trip each, never interleaved).

Per stage, under the run's prefix `P` (`agen:run:{name}:`):

  P{stage}:next     the lowest index never handed out
  P{stage}:lease    ZSET index -> lease end (Redis clock): claimed, being worked on
  P{stage}:owner    HASH index -> worker id (claimed or being committed)
  P{stage}:pending  HASH index -> worker id: its record is being written (never expires: only the
                    owner's shard can tell whether the write landed, so only its restart resolves it)
  P{stage}:done     bitmap: index committed (fsynced in its worker's shard)
  P{stage}:acc      HASH worker id -> accepted records committed
  P{stage}:total    accepted records committed, all workers
  P{stage}:slot     SET of indices decided "accepted" and not committed yet: a slot under the target

and for the run: P epoch (the run's fingerprint; missing = Redis lost the state), P ready (the
state is complete: a rebuild after a loss has finished), P pool (LIST of accepted proposals),
P seen (HASH exact-duplicate key -> the task id that had it first).

Every script that hands out or commits work returns -2 when `epoch` is missing, so a Redis that
restarted empty under a running worker stops it instead of re-issuing committed indices.
"""

# KEYS: epoch, next, lease, owner, done. ARGV: worker, lease_s, limit.
# Returns the claimed index (an expired lease of another worker first, else `next`), -1 (none left
# below limit) or -2 (state lost).
CLAIM = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -2 end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local limit = tonumber(ARGV[3])
local i = nil
for _, idx in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, 8)) do
  if redis.call('HGET', KEYS[4], idx) == ARGV[1] then
    -- this worker's own lease ran out while it still works on it (it stalled): renewed, not re-issued
    redis.call('ZADD', KEYS[3], now + tonumber(ARGV[2]), idx)
  elseif tonumber(idx) < limit then
    i = tonumber(idx)
    break
  end
end
if i == nil then
  local n = tonumber(redis.call('GET', KEYS[2]) or '0')
  while n < limit and redis.call('GETBIT', KEYS[5], n) == 1 do n = n + 1 end
  if n >= limit then
    redis.call('SET', KEYS[2], n)
    return -1
  end
  i = n
  redis.call('SET', KEYS[2], n + 1)
end
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[2]), i)
redis.call('HSET', KEYS[4], i, ARGV[1])
return i
"""

# KEYS: lease, owner. ARGV: worker, lease_s, indices... Extends this worker's leases; returns how
# many of the indices it no longer owns.
RENEW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local lost = 0
for j = 3, #ARGV do
  if redis.call('HGET', KEYS[2], ARGV[j]) == ARGV[1] then
    redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[2]), ARGV[j])
  else
    lost = lost + 1
  end
end
return lost
"""

# KEYS: epoch, lease, owner, pending, done. ARGV: worker, indices... Moves this worker's claims to
# "being committed"; returns the indices it may not write (claimed by another worker meanwhile,
# or already done), or {-2} when the state is lost.
PRECOMMIT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return {-2} end
local refused = {}
for j = 2, #ARGV do
  local i = ARGV[j]
  if redis.call('HGET', KEYS[3], i) == ARGV[1] and redis.call('GETBIT', KEYS[5], tonumber(i)) == 0 then
    redis.call('ZREM', KEYS[2], i)
    redis.call('HSET', KEYS[4], i, ARGV[1])
  else
    refused[#refused + 1] = tonumber(i)
  end
end
return refused
"""

# KEYS: lease, owner, pending, done, acc, total, slot. ARGV: worker, then (index, accepted 0/1) pairs.
# Marks committed indices done; counts an accepted one only the first time (idempotent: a restart
# marks its whole shard again). Returns this worker's accepted count.
DONE = """
for j = 2, #ARGV, 2 do
  local i = ARGV[j]
  local was = redis.call('SETBIT', KEYS[4], tonumber(i), 1)
  redis.call('ZREM', KEYS[1], i)
  redis.call('HDEL', KEYS[2], i)
  redis.call('HDEL', KEYS[3], i)
  if was == 0 and ARGV[j + 1] == '1' then
    redis.call('HINCRBY', KEYS[5], ARGV[1], 1)
    redis.call('INCR', KEYS[6])
  end
  redis.call('SREM', KEYS[7], i)
end
return tonumber(redis.call('HGET', KEYS[5], ARGV[1]) or '0')
"""

# KEYS: lease, owner, pending, slot. ARGV: worker. Everything this worker claimed or was committing and
# has not marked done returns to the pool at once (run after its committed shard was marked done:
# what is still pending never reached its shard), owned by nobody (so any worker, this one
# included, claims them next). Returns how many indices were released.
RELEASE = """
local n = 0
local owners = redis.call('HGETALL', KEYS[2])
for j = 1, #owners, 2 do
  if owners[j + 1] == ARGV[1] then
    redis.call('HDEL', KEYS[3], owners[j])
    redis.call('HDEL', KEYS[2], owners[j])
    redis.call('ZADD', KEYS[1], 0, owners[j])
    redis.call('SREM', KEYS[4], owners[j])
    n = n + 1
  end
end
return n
"""

# KEYS: seen. ARGV: key, task id. The task id that first had this key (itself if it is the first).
SEEN = """
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 1 then return ARGV[2] end
return redis.call('HGET', KEYS[1], ARGV[1])
"""

# KEYS: total, slot, owner, done. ARGV: index, target, worker. 1 if this accepted verdict fits under
# the target (committed + reserved < target; the slot is kept until DONE or RELEASE), else 0:
# surplus. Only the index's owner may take its slot, and not once it is done: a worker whose claim
# was taken over (it stalled past its lease) would otherwise hold a slot nobody ever gives back.
SLOT = """
if redis.call('HGET', KEYS[3], ARGV[1]) ~= ARGV[3] or redis.call('GETBIT', KEYS[4], tonumber(ARGV[1])) == 1 then
  return 0
end
if redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 1 then return 1 end
if tonumber(redis.call('GET', KEYS[1]) or '0') + redis.call('SCARD', KEYS[2]) >= tonumber(ARGV[2]) then return 0 end
redis.call('SADD', KEYS[2], ARGV[1])
return 1
"""
