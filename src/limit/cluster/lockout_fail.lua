-- One failed login, counted on every key at once (atomic). KEYS come in pairs: KEYS[2i-1]
-- the record (a hash), KEYS[2i] its lock flag. For pair i, ARGV[3i-2..3i] = failures,
-- window (us), max_lockout (us). The state machine of count() in src/limit/lockout.rs:
-- after `failures` failures within `window` the key is locked for window * 2^lockouts,
-- capped at max_lockout; a quiet spell longer than the window restarts the count, one
-- longer than 2 * max(max_lockout, window) forgets the back-off. Fields: f failures,
-- ws window start, n lockouts so far, lu locked until (us).
-- A lock is also written as a plain string, the lock flag: value = locked until (us, Redis
-- TIME), PX = the lock rounded up to whole ms. The check (cluster/batch.rs) reads the
-- flags with one MGET plus TIME for many requests at once, no script: the flag is locked
-- while it exists and its value is later than TIME (the same reading as Lockouts::check).
-- Returns the longest lock started (us), 0 if none. `now` comes from the clock prelude.
local longest = 0
for i = 1, #KEYS / 2 do
  local record = KEYS[2 * i - 1]
  local failures = tonumber(ARGV[3 * i - 2])
  local window = tonumber(ARGV[3 * i - 1])
  local max_lockout = tonumber(ARGV[3 * i])
  local e = redis.call('HMGET', record, 'f', 'ws', 'n', 'lu')
  local f = tonumber(e[1]) or 0
  local ws = tonumber(e[2]) or now
  local n = tonumber(e[3]) or 0
  local lu = tonumber(e[4]) or 0
  local quiet = math.max(now - ws, 0)
  local forget = math.max(max_lockout, window) * 2
  if quiet > window then
    f = 0
    ws = now
    if quiet > forget then n = 0 end
  end
  f = f + 1
  if f >= failures then
    local wait = math.min(window * 2 ^ math.min(n, 16), max_lockout)
    n = n + 1
    f = 0
    ws = now + wait
    lu = now + wait
    longest = math.max(longest, wait)
    redis.call('SET', KEYS[2 * i], string.format('%.0f', lu), 'PX',
      math.max(math.ceil(wait / 1000), 1))
  end
  redis.call('HSET', record, 'f', f, 'ws', string.format('%.0f', ws), 'n', n,
    'lu', string.format('%.0f', lu))
  -- Kept while locked and until the back-off would be forgotten; then it deletes itself.
  local ttl = math.max(lu, ws + forget) - now
  redis.call('PEXPIRE', record, math.max(math.ceil(ttl / 1000), 1))
end
return longest
