//! The client side towards the PACS's REST API: pooled keep-alive HTTP/1.1 connections
//! (`pool`), a clock on every phase with the bodies that tell whose turn it is (`body`),
//! and one typed error per failed phase (`error`). Knows nothing of the client side:
//! generic over the request body, so it imports nothing else from `http`.

mod body;
mod error;
mod pool;

pub use self::body::PacsBody;
pub use self::error::UpstreamError;
pub use self::pool::{Pool, Sticky, Timeouts};
