//! The one keyed limiter behind every rate limit and lockout, HTTP and DICOM alike: a
//! bounded, sharded table of per-key state (`table`), the generic cell rate algorithm over
//! it (`gcra`: per-IP, per-user and per-route request rates, the DICOM association rate),
//! and failed-login lockouts with exponential back-off (`lockout`). All of it is pure: the
//! caller passes the time (`Instant`), so tests drive the clock and a shared store (Redis)
//! can apply the same arithmetic: `cluster` does, in Lua scripts run by Redis, for
//! replicas that share limits (`[cluster]`); without it nothing here does I/O.

pub mod cluster;
pub mod gcra;
pub mod lockout;
pub mod shared;
pub mod table;

pub use gcra::Gcra;
pub use lockout::Lockouts;
