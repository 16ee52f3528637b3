-- GCRA (ITU-T I.371 section 4.4.2, virtual scheduling), the same arithmetic as
-- src/limit/gcra.rs. `now` (microseconds) is defined by the clock prelude that Rust
-- prepends: Redis's TIME in production, so replica clocks do not matter.
-- KEYS[1]: the bucket. ARGV[1]: emission interval T (us), ARGV[2]: burst.
-- Returns {allowed (1/0), retry_after_us}. The TAT is stored with PX = TAT - now, so an
-- idle key deletes itself exactly when its bucket is full again (a full bucket equals no
-- key): memory is bounded by the keys active within one burst's time.
local T = tonumber(ARGV[1])
local tau = T * tonumber(ARGV[2])
-- A value that is not a number (never written by us) counts as a full bucket.
local tat = tonumber(redis.call('GET', KEYS[1])) or now
local ahead = math.max(tat, now) - now
if ahead + T > tau then
  return {0, ahead + T - tau}
end
local new_tat = now + ahead + T
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000))
return {1, 0}
