//! Phase 2 of an association: one bounded A-ASSOCIATE-RQ (PS3.8 §9.3.2: 6-byte PDU
//! header, then at most `CONTROL_PDU_MAX` bytes) under the ARTIM timer, and the answers
//! the gateway gives before any acceptor is involved (A-ABORT, A-ASSOCIATE-RJ), each
//! followed by a lingering close so a requestor still sending reads them.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::dicom::association::Association;
use crate::dicom::pdu::{self, abort_pdu, AbortReason, Rejection};
use crate::dicom::session::CONTROL_PDU_MAX;
use crate::server::linger;

/// Read and parse the A-ASSOCIATE-RQ under the ARTIM timer; on failure answer as PS3.8
/// says (A-ABORT for a wrong or malformed PDU, RJ for an unsupported protocol version)
/// and return `None`.
pub async fn read_association_rq<S>(
    stream: &mut S,
    artim: Duration,
) -> Option<(Vec<u8>, Association)>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let read = tokio::time::timeout(artim, read_first_pdu(stream, CONTROL_PDU_MAX)).await;
    let bytes = match read {
        Err(_) => {
            tracing::info!("no A-ASSOCIATE-RQ before the ARTIM timeout");
            return None;
        }
        Ok(Err(FirstPduError::Io(e))) => {
            tracing::debug!(error = %e, "closed before the A-ASSOCIATE-RQ");
            return None;
        }
        Ok(Err(e @ FirstPduError::NotRq(_))) => {
            return abort(stream, AbortReason::UnexpectedPdu, &e).await
        }
        Ok(Err(e @ FirstPduError::TooLong(_))) => {
            return abort(stream, AbortReason::InvalidPduParameterValue, &e).await
        }
        Ok(Ok(bytes)) => bytes,
    };
    let rq = match Association::parse_rq(&bytes) {
        Ok(rq) => rq,
        Err(e) => return abort(stream, AbortReason::InvalidPduParameterValue, &e).await,
    };
    let span = tracing::Span::current();
    span.record("calling", rq.calling_ae.as_str());
    span.record("called", rq.called_ae.as_str());
    // PS3.8 §9.3.2: only bit 0 of the protocol version is defined and must be set.
    if rq.protocol_version & 1 == 0 {
        tracing::info!(
            version = rq.protocol_version,
            "unsupported protocol version"
        );
        reject(stream, Rejection::PROTOCOL_VERSION, true).await;
        return None;
    }
    Some((bytes, rq))
}

/// A-ABORT (PS3.8 §9.3.8) for a first PDU that is not a well-formed RQ. The requestor of
/// an oversized PDU is still sending it: the lingering close lets it read the abort.
async fn abort<S, E>(
    stream: &mut S,
    reason: AbortReason,
    error: &E,
) -> Option<(Vec<u8>, Association)>
where
    S: AsyncRead + AsyncWrite + Unpin,
    E: std::fmt::Display,
{
    tracing::info!(error = %error, "association aborted before it started");
    if stream.write_all(&abort_pdu(reason)).await.is_ok() {
        let _ = linger::close(stream, linger::DICOM).await;
    }
    None
}

/// Send an A-ASSOCIATE-RJ, then, with `linger`, close lingering (bounded) so the peer can
/// read it (PS3.8 §9.1.5 runs ARTIM here; closing at once can reset the connection before
/// the peer read the RJ). Refusals by the limits do not linger: the limits bound what a
/// flood costs, so a peer over them does not get to hold its connection (and an accept
/// slot) open meanwhile.
pub async fn reject<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    rejection: Rejection,
    linger: bool,
) {
    if stream.write_all(&rejection.to_pdu()).await.is_err() || stream.flush().await.is_err() {
        return;
    }
    let _ = if linger {
        linger::close(stream, linger::DICOM).await
    } else {
        stream.shutdown().await
    };
}

/// Read the first PDU of an association (the A-ASSOCIATE-RQ), bounded in size; the caller
/// applies the ARTIM timeout (PS3.8 §9.1.5).
pub async fn read_first_pdu<R: AsyncRead + Unpin>(
    src: &mut R,
    max: u32,
) -> Result<Vec<u8>, FirstPduError> {
    let mut header = [0u8; pdu::PDU_HEADER_LEN];
    src.read_exact(&mut header)
        .await
        .map_err(FirstPduError::Io)?;
    let parsed = pdu::PduHeader::parse(&header).ok_or(FirstPduError::NotRq(0))?;
    if parsed.pdu_type != pdu::ASSOCIATE_RQ {
        return Err(FirstPduError::NotRq(parsed.pdu_type));
    }
    if parsed.length > max {
        return Err(FirstPduError::TooLong(parsed.length));
    }
    // The length was checked against `max` above: this allocation is bounded.
    let mut bytes = vec![0u8; pdu::PDU_HEADER_LEN + parsed.length as usize];
    bytes[..header.len()].copy_from_slice(&header);
    src.read_exact(&mut bytes[header.len()..])
        .await
        .map_err(FirstPduError::Io)?;
    Ok(bytes)
}

#[derive(Debug, thiserror::Error)]
pub enum FirstPduError {
    #[error("connection closed before the A-ASSOCIATE-RQ: {0}")]
    Io(std::io::Error),
    #[error("first PDU is {name} ({0:#04x}), not an A-ASSOCIATE-RQ", name = pdu::type_name(*.0))]
    NotRq(u8),
    #[error("A-ASSOCIATE-RQ of {0} bytes is too long")]
    TooLong(u32),
}
