-- Lockout check for every key in KEYS (a client network and a user name): the longest
-- remaining lock in microseconds, 0 when none is locked. `now` comes from the clock
-- prelude (Redis TIME). Same reading as Lockouts::check in src/limit/lockout.rs.
local longest = 0
for i = 1, #KEYS do
  local until_us = tonumber(redis.call('HGET', KEYS[i], 'lu'))
  if until_us and until_us > now then
    longest = math.max(longest, until_us - now)
  end
end
return longest
