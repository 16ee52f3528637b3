//! One DICOM association, from an accepted TCP connection to its audit record, for both
//! the inbound listener (TLS in, plain TCP to the PACS) and the outbound tunnels (plain in
//! from the PACS, TLS out to a remote peer). What differs is given by [`Ends`]; the phases,
//! their order and their timeouts are the same:
//!
//! | phase | inbound (`[dicom]`) | outbound (`[[dicom.outbound]]`) |
//! |---|---|---|
//! | 1. open the requestor's stream | TLS handshake, `dicom.handshake_timeout` | plain TCP |
//! | 2. one bounded A-ASSOCIATE-RQ (ARTIM) | `dicom.artim_timeout` | `dicom.artim_timeout` |
//! | 3. admit (RJ on refusal; first, RJ while the audit cannot be written in refuse mode) | limits, then the policy | AE titles, `remote_aets` |
//! | 4. connect the acceptor (RJ if down) | TCP, `dicom.upstream_connect_timeout` | TCP, `connect_timeout`; TLS, `dicom.handshake_timeout` |
//! | 5. replay the RQ; the acceptor's answer (ARTIM) | `dicom.artim_timeout` | `dicom.artim_timeout` |
//! | 6. relay with the enforcer | `dicom.idle_timeout` | `idle_timeout` |
//! | 7. one `dicom.association` audit record | | |
//!
//! Phase 2 answers as PS3.8 §9.2 says (`rq`); phase 7 is `report`.

mod report;
mod rq;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::access::{AssociationRefusal, Grant};
use super::association::Association;
use super::enforce::Enforcer;
use super::inspect::Inspector;
use super::limits::Guard;
use super::record::{Activity, Parties};
use super::relay::{self, Report};
use super::session::Session;
use crate::audit::Audit;
use crate::tls::PeerIdentity;

pub use report::{audit_rejection, audit_report, log_report};
pub use rq::{read_association_rq, reject};

/// The timeouts of one association's phases (see the module docs for the keys).
#[derive(Debug, Clone, Copy)]
pub struct Phases {
    /// Each TLS handshake, whichever side of the gateway it is on.
    pub handshake: Duration,
    /// From the open stream to a complete A-ASSOCIATE-RQ (PS3.8 §9.1.5 ARTIM), and from
    /// the replayed RQ to the acceptor's answer.
    pub artim: Duration,
    /// TCP connect to the acceptor.
    pub connect: Duration,
    /// No byte either way for this long during the relay: A-ABORT.
    pub idle: Duration,
    /// Cap on every PDU, whatever was negotiated.
    pub max_pdu_length: u32,
}

/// The requestor's stream, ready for the RQ, and who it proved to be (inbound TLS).
pub struct Opened<S> {
    pub stream: S,
    pub identity: Option<Arc<PeerIdentity>>,
}

/// An admitted RQ: the rights of the association and the limit slots it holds until it
/// ends.
pub struct Admitted {
    pub grant: Grant,
    pub guards: Vec<Guard>,
}

/// The acceptor's stream and who it proved to be (outbound TLS).
pub struct Connected<S> {
    pub stream: S,
    pub identity: Option<Arc<PeerIdentity>>,
}

/// What differs between the inbound listener and an outbound tunnel; one value per
/// connection.
pub trait Ends: Send + Sync {
    type Requestor: AsyncRead + AsyncWrite + Send + Unpin;
    type Acceptor: AsyncRead + AsyncWrite + Send + Unpin;

    /// `dicom` or the tunnel's name, for the audit record.
    fn listener(&self) -> &str;
    fn peer(&self) -> SocketAddr;
    /// The load balancer the connection came through (PROXY protocol), for the audit.
    fn via(&self) -> Option<SocketAddr> {
        None
    }
    fn phases(&self) -> Phases;
    fn audit(&self) -> &Arc<Audit>;

    /// Phase 1; `None` when the connection is already over (logged here).
    fn open(&self, tcp: TcpStream) -> impl Future<Output = Option<Opened<Self::Requestor>>> + Send;

    /// Phase 3: the refusal is answered with its A-ASSOCIATE-RJ by the flow. Async: a
    /// shared rate (`[cluster]`) asks Redis, bounded by `cluster.timeout`.
    fn admit(
        &self,
        rq: &Association,
        identity: Option<&PeerIdentity>,
    ) -> impl Future<Output = Result<Admitted, AssociationRefusal>> + Send;

    /// Phase 4; on failure (logged here) the `Unreachable` refusal to answer with.
    fn connect(
        &self,
    ) -> impl Future<Output = Result<Connected<Self::Acceptor>, AssociationRefusal>> + Send;
}

/// Run one association through every phase.
pub async fn run<E: Ends>(ends: E, tcp: TcpStream) {
    let started = Instant::now();
    let phases = ends.phases();
    let Some(Opened {
        mut stream,
        identity,
    }) = ends.open(tcp).await
    else {
        return;
    };
    let Some((rq_bytes, rq)) = read_association_rq(&mut stream, phases.artim).await else {
        return;
    };
    let mut parties = Parties::new(ends.listener(), ends.peer().ip(), identity.as_deref());
    parties.via = ends.via().map(|lb| lb.ip());
    parties.calling_ae = rq.calling_ae.clone();
    parties.called_ae = rq.called_ae.clone();
    // `[audit] on_full = "refuse"`: no association while its record could not be written
    // (checked first, for both directions).
    let admitted = if ends.audit().admits() {
        ends.admit(&rq, identity.as_deref()).await
    } else {
        Err(AssociationRefusal::AuditUnavailable)
    };
    let Admitted { grant, guards } = match admitted {
        Ok(admitted) => admitted,
        Err(refusal) => {
            tracing::info!(reason = %refusal, "association rejected");
            return refuse(&mut stream, ends.audit(), &parties, &refusal, started).await;
        }
    };
    parties.modality = grant.modality.clone();
    let acceptor = match ends.connect().await {
        Ok(connected) => connected,
        Err(refusal) => {
            // The slots are free again while the peer reads the RJ.
            drop(guards);
            return refuse(&mut stream, ends.audit(), &parties, &refusal, started).await;
        }
    };
    if let Some(id) = acceptor.identity {
        tracing::debug!(remote.subject = %id.subject, remote.fp = %id.fingerprint, "remote verified");
        parties.tls_fingerprint = Some(id.fingerprint.to_string());
        parties.tls_cn = id.common_name.clone();
    }
    let parties = Arc::new(parties);
    let activity = Arc::new(Mutex::new(Activity::default()));
    let enforcer = Enforcer::new(
        grant,
        parties.clone(),
        ends.audit().clone(),
        activity.clone(),
    );
    let report = forward_and_relay(
        stream,
        acceptor.stream,
        &rq_bytes,
        rq,
        Box::new(enforcer),
        phases,
    )
    .await;
    drop(guards);
    log_report(&report, started);
    audit_report(ends.audit(), &parties, &activity, &report, started);
}

async fn refuse<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    audit: &Audit,
    parties: &Parties,
    refusal: &AssociationRefusal,
    started: Instant,
) {
    audit_rejection(audit, parties, refusal, started);
    reject(stream, refusal.rejection(), !refusal.is_limit()).await;
}

/// TCP connect under `timeout`, with TCP_NODELAY (Nagle plus delayed ACKs would add ~40 ms
/// to every small PDU exchange).
pub async fn connect_tcp(addr: &str, timeout: Duration) -> std::io::Result<TcpStream> {
    let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Replay the RQ's original bytes to the acceptor, then relay the association.
async fn forward_and_relay<C, U>(
    requestor: C,
    mut acceptor: U,
    rq_bytes: &[u8],
    rq: Association,
    inspector: Box<dyn Inspector>,
    phases: Phases,
) -> Report
where
    C: AsyncRead + AsyncWrite + Send,
    U: AsyncRead + AsyncWrite + Send + Unpin,
{
    let session = Session::new(rq, phases.max_pdu_length, inspector);
    if let Err(e) = acceptor.write_all(rq_bytes).await {
        return Report {
            ending: relay::Ending::Failed(e.to_string()),
            bytes_from_requestor: 0,
            bytes_from_acceptor: 0,
            session,
        };
    }
    let timeouts = relay::Timeouts {
        idle: phases.idle,
        artim: phases.artim,
    };
    relay::relay(requestor, acceptor, session, timeouts).await
}
