-- GCRA (ITU-T I.371 section 4.4.2, virtual scheduling), the same arithmetic as
-- src/limit/gcra.rs. `now` (microseconds) is defined by the clock prelude that Rust
-- prepends: Redis's TIME in production, so replica clocks do not matter.
-- KEYS[1]: the bucket. ARGV[1]: emission interval T (us), ARGV[2]: burst, ARGV[3]: the
-- most requests to admit at once (a replica's lease; 1 = one request, exactly
-- gcra.rs). Admitting n moves the TAT on by n * T, so leased requests are charged here
-- when taken: the total across replicas never exceeds the rate.
-- Returns {admitted n (0 = refused), retry_after_us}. The TAT is stored with
-- PX = TAT - now, so an idle key deletes itself exactly when its bucket is full again (a
-- full bucket equals no key): memory is bounded by the keys active within one burst.
local T = tonumber(ARGV[1])
local tau = T * tonumber(ARGV[2])
local want = tonumber(ARGV[3])
-- A value that is not a number (never written by us) counts as a full bucket.
local tat = tonumber(redis.call('GET', KEYS[1])) or now
local ahead = math.max(tat, now) - now
-- Admitted while ahead + n * T <= tau (for n = 1: the test of gcra.rs).
local n = math.min(want, math.floor((tau - ahead) / T))
if n < 1 then
  return {0, ahead + T - tau}
end
local new_tat = now + ahead + n * T
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000))
return {n, 0}
