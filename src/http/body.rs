//! The body types between the client and the PACS.

use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::body::Incoming;

use super::metered::Metered;
use super::upstream::PacsBody;

/// Body of every response we send: the PACS's, streamed under its body clock, or a short
/// one of our own.
pub type ProxyBody = Either<PacsBody, Full<Bytes>>;

/// Body of every request we forward: the client's, streamed, bytes counted for the audit.
pub type RequestBody = Metered<Incoming>;

/// What the client receives: the PACS's body or ours, counted, audited when done.
pub type ResponseBody = Metered<ProxyBody>;
