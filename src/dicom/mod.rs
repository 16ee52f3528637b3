//! DICOM over TLS: the inbound listener (`inbound`) and outbound tunnels (`outbound`), two
//! thin shells around one association flow (`flow`: the phases and their timeouts), and the
//! association machinery they share: PDU framing (`pdu`), A-ASSOCIATE parsing
//! (`association`), the per-association state (`session`), the sans-IO header walker
//! (`walker`), the async relay (`relay`) and the policy seam (`inspect`). Policy: the one
//! AE-title grammar (`ae`), strict DIMSE command sets (`command`), the association decision (`policy`), command rights and the
//! refusal -> RJ/status mapping (`access`), the enforcing inspector (`enforce`), limits
//! (`limits`) and audit records (`record`).

pub mod access;
pub mod ae;
pub mod association;
pub mod command;
pub mod enforce;
pub mod flow;
pub mod inbound;
pub mod inspect;
pub mod limits;
pub mod outbound;
pub mod pdu;
pub mod policy;
pub mod record;
pub mod relay;
pub mod session;
pub mod walker;
