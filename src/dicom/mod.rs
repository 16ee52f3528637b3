//! DICOM over TLS: the inbound listener (`inbound`), outbound tunnels (`outbound`), and the
//! association machinery they share: PDU framing (`pdu`), A-ASSOCIATE parsing
//! (`association`), the per-association state (`session`), the sans-IO header walker
//! (`walker`), the async relay (`relay`) and the policy seam (`inspect`).

pub mod association;
pub mod inbound;
pub mod inspect;
pub mod outbound;
pub mod pdu;
pub mod relay;
pub mod session;
pub mod walker;
