-- One failed login, counted on every key in KEYS at once (atomic). For KEYS[i],
-- ARGV[3i-2..3i] = failures, window (us), max_lockout (us). The state machine of
-- count() in src/limit/lockout.rs: after `failures` failures within `window` the key is
-- locked for window * 2^lockouts, capped at max_lockout; a quiet spell longer than the
-- window restarts the count, one longer than 2 * max(max_lockout, window) forgets the
-- back-off. Fields: f failures, ws window start, n lockouts so far, lu locked until (us).
-- Returns the longest lock started (us), 0 if none. `now` comes from the clock prelude.
local longest = 0
for i = 1, #KEYS do
  local failures = tonumber(ARGV[3 * i - 2])
  local window = tonumber(ARGV[3 * i - 1])
  local max_lockout = tonumber(ARGV[3 * i])
  local e = redis.call('HMGET', KEYS[i], 'f', 'ws', 'n', 'lu')
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
  end
  redis.call('HSET', KEYS[i], 'f', f, 'ws', string.format('%.0f', ws), 'n', n,
    'lu', string.format('%.0f', lu))
  -- Kept while locked and until the back-off would be forgotten; then it deletes itself.
  local ttl = math.max(lu, ws + forget) - now
  redis.call('PEXPIRE', KEYS[i], math.max(math.ceil(ttl / 1000), 1))
end
return longest
