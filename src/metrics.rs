//! What `/metrics` reports (Prometheus text format 0.0.4, encoded by `prometheus-client`,
//! the Prometheus project's own Rust client). Events are recorded into one static
//! [`Metrics`] of lock-free counters (`counters`); the admin listener encodes a snapshot
//! per scrape (`encode`). Label values come from closed sets (status codes, refusal
//! codes, listener names), never from request data.

mod counters;
mod encode;
mod registry;

pub use self::counters::{Counters, Histogram};
pub use self::encode::{render, CONTENT_TYPE};
pub use self::registry::{
    Metrics, OpenConnection, AUDIT_LOST_REASONS, AUDIT_QUEUE_FULL, AUDIT_SHUTDOWN,
    AUDIT_UNSERIALISABLE, DICOM, HTTPS, METRICS, OUTBOUND,
};
