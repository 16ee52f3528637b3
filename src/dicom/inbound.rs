//! The DICOM TLS listener: handshake, one bounded A-ASSOCIATE-RQ under the ARTIM timer,
//! then admission (limits, then [`Policy`]: A-ASSOCIATE-RJ on refusal), one upstream
//! connection per association and the relay with the [`Enforcer`] as inspector. One
//! `dicom.association` audit record per association.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arc_swap::ArcSwap;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::access::{AssociationRefusal, Grant};
use super::association::Association;
use super::enforce::Enforcer;
use super::inspect::Inspector;
use super::limits::{Guard, Limits};
use super::pdu::{abort_pdu, AbortReason, Rejection};
use super::policy::{Peer, Policy};
use super::record::{self, Activity, AssociationRecord, Parties};
use super::relay::{self, read_first_pdu, FirstPduError, Report};
use super::session::{Session, CONTROL_PDU_MAX};
use crate::audit::Audit;
use crate::config::{Config, ConfigError, DicomConfig};
use crate::metrics::{DICOM, METRICS, OUTBOUND};
use crate::reload::{Commit, Reloadable};
use crate::server::{self, Admission, ClientBudget, Shutdown};
use crate::tls::recheck::Revocable;
use crate::tls::{self, PeerIdentity, ReloadableServer};

pub struct DicomContext {
    pub config: DicomConfig,
    pub tls: Arc<ReloadableServer>,
    pub audit: Arc<Audit>,
    /// Swapped whole on SIGHUP (see [`Reloadable`]), per-modality limits included; the
    /// per-IP limits and rate need a restart.
    pub policy: Arc<ArcSwap<Policy>>,
    pub limits: Arc<Limits>,
}

impl DicomContext {
    pub fn new(config: DicomConfig, tls: Arc<ReloadableServer>, audit: Arc<Audit>) -> Arc<Self> {
        let p = &config.policy;
        let limits = Limits::new(p.max_associations_per_ip, p.association_rate_per_ip);
        Arc::new(Self {
            policy: Arc::new(ArcSwap::from_pointee(Policy::new(config.policy.clone()))),
            limits,
            config,
            tls,
            audit,
        })
    }
}

/// SIGHUP: the new `[dicom]` policy and modalities apply to new associations.
impl Reloadable for DicomContext {
    fn prepare(&self, config: &Config) -> Result<Commit, ConfigError> {
        let Some(dicom) = &config.dicom else {
            return Ok(Box::new(|| {}));
        };
        let policy = Arc::new(Policy::new(dicom.policy.clone()));
        let slot = self.policy.clone();
        Ok(Box::new(move || slot.store(policy)))
    }
}

pub async fn serve(
    listener: TcpListener,
    ctx: Arc<DicomContext>,
    shutdown: Shutdown,
    tracker: TaskTracker,
) {
    let limits = (
        ctx.config.max_associations,
        Some(ClientBudget::new(ctx.config.budget)),
    );
    server::accept_loop(
        "dicom",
        listener,
        limits,
        shutdown,
        tracker,
        move |tcp, peer, admission| {
            let span = tracing::info_span!(
                "assoc",
                listener = "dicom",
                %peer,
                tls.cn = tracing::field::Empty,
                tls.fp = tracing::field::Empty,
                calling = tracing::field::Empty,
                called = tracing::field::Empty
            );
            handle(tcp, (peer, admission), ctx.clone()).instrument(span)
        },
    )
    .await;
}

/// `admission` stays pending (`server::budget`) until the A-ASSOCIATE-RQ is admitted:
/// a silent TLS connection, or one that lingers after its RJ, is closed at the
/// listener's `pending_timeout`; an admitted association counts in the per-IP limits.
async fn handle(
    tcp: TcpStream,
    (peer, admission): (SocketAddr, Arc<Admission>),
    ctx: Arc<DicomContext>,
) {
    let started = Instant::now();
    let cfg = &ctx.config;
    let handshake = tokio::time::timeout(cfg.handshake_timeout, ctx.tls.accept(tls_reader(tcp)));
    let (mut stream, identity, revocation) = match tls::observe_handshake(DICOM, handshake.await) {
        Ok(Ok(a)) => (a.stream, a.identity, a.revocation),
        Ok(Err(e)) => return tls::log_handshake_failure(&e),
        Err(_) => return tracing::debug!("TLS handshake timed out"),
    };
    tls::record_identity(&tracing::Span::current(), identity.as_deref());
    let Some((rq_bytes, rq)) = read_association_rq(&mut stream, cfg.artim_timeout).await else {
        return;
    };
    let mut parties = Parties::new("dicom", peer.ip(), identity.as_deref());
    parties.calling_ae = rq.calling_ae.clone();
    parties.called_ae = rq.called_ae.clone();
    let (grant, guards) = match admit(&ctx, &rq, peer, identity.as_deref()) {
        Ok(admitted) => admitted,
        Err(refusal) => {
            tracing::info!(reason = %refusal, "association rejected");
            audit_rejection(&ctx.audit, &parties, &refusal, started);
            return reject(&mut stream, refusal.rejection(), !refusal.is_limit()).await;
        }
    };
    admission.authenticated();
    parties.modality = grant.modality.clone();
    let upstream = match connect_upstream(&cfg.upstream, cfg.upstream_connect_timeout).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(upstream = %cfg.upstream, error = %e, "PACS unreachable; association rejected (transient)");
            let refusal = AssociationRefusal::Unreachable("pacs_unreachable");
            audit_rejection(&ctx.audit, &parties, &refusal, started);
            // The slots are free again while the peer reads the RJ.
            drop(guards);
            return reject(&mut stream, refusal.rejection(), !refusal.is_limit()).await;
        }
    };
    let parties = Arc::new(parties);
    let activity = Arc::new(Mutex::new(Activity::default()));
    let enforcer = Enforcer::new(grant, parties.clone(), ctx.audit.clone(), activity.clone());
    let report = forward_and_relay(
        Revocable::new(stream, revocation),
        upstream,
        &rq_bytes,
        rq,
        Box::new(enforcer),
        (cfg.max_pdu_length, cfg.idle_timeout),
    )
    .await;
    log_report(&report, started);
    audit_report(&ctx.audit, &parties, &activity, &report, started);
}

/// Limits first (cheap, and they bound what a flood costs), then the policy, then the
/// matched modality's limit. The guards release their slots when the association ends.
fn admit(
    ctx: &DicomContext,
    rq: &Association,
    peer: SocketAddr,
    identity: Option<&PeerIdentity>,
) -> Result<(Grant, Vec<Guard>), AssociationRefusal> {
    if !ctx.audit.admits() {
        return Err(AssociationRefusal::AuditUnavailable);
    }
    let mut guards = Vec::new();
    let limit = |e: super::limits::LimitExceeded| AssociationRefusal::LimitExceeded(e.code());
    guards.push(
        ctx.limits
            .admit_ip(peer.ip(), Instant::now())
            .map_err(limit)?,
    );
    let policy = ctx.policy.load();
    let grant = policy.admit(
        &rq.calling_ae,
        &rq.called_ae,
        &Peer {
            ip: peer.ip(),
            identity,
        },
    )?;
    if let Some(m) = &grant.modality {
        if let Some(g) = ctx
            .limits
            .admit_modality(m, policy.modality_limit(m))
            .map_err(limit)?
        {
            guards.push(g);
        }
    }
    Ok((grant, guards))
}

/// rustls reads ciphertext 4 KiB at a time; a user-space buffer below it turns that into
/// one syscall per 64 KiB during bulk C-STOREs (measured: 5x fewer reads).
pub fn tls_reader(tcp: TcpStream) -> tokio::io::BufReader<TcpStream> {
    tokio::io::BufReader::with_capacity(64 * 1024, tcp)
}

/// Read and parse the A-ASSOCIATE-RQ under the ARTIM timer; on failure answer as PS3.8
/// says (A-ABORT for a wrong or malformed PDU, RJ for an unsupported protocol version)
/// and return `None`.
pub async fn read_association_rq<S>(
    stream: &mut S,
    artim: std::time::Duration,
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

async fn abort<S, E>(
    stream: &mut S,
    reason: AbortReason,
    error: &E,
) -> Option<(Vec<u8>, Association)>
where
    S: AsyncWrite + Unpin,
    E: std::fmt::Display,
{
    tracing::info!(error = %error, "association aborted before it started");
    let _ = stream.write_all(&abort_pdu(reason)).await;
    let _ = stream.shutdown().await;
    None
}

/// After an RJ, how long the peer gets to read it and close first (PS3.8 §9.1.5 runs
/// ARTIM here; closing at once can reset the connection before the peer read the RJ).
const REJECT_LINGER: std::time::Duration = std::time::Duration::from_secs(5);

/// Send an A-ASSOCIATE-RJ, then, with `linger`, wait (bounded) for the peer to close.
/// Refusals by the limits do not linger: the limits bound what a flood costs, so a peer
/// over them does not get to hold its connection (and an accept slot) open meanwhile.
pub async fn reject<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    rejection: Rejection,
    linger: bool,
) {
    use tokio::io::AsyncReadExt;
    let _ = stream.write_all(&rejection.to_pdu()).await;
    let _ = stream.flush().await;
    if linger {
        let drain = async {
            let mut sink = [0u8; 1024];
            while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
        };
        let _ = tokio::time::timeout(REJECT_LINGER, drain).await;
    }
    let _ = stream.shutdown().await;
}

pub async fn connect_upstream(
    addr: &str,
    timeout: std::time::Duration,
) -> std::io::Result<TcpStream> {
    let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Replay the RQ's original bytes upstream, then relay the association.
pub async fn forward_and_relay<C, U>(
    client: C,
    mut upstream: U,
    rq_bytes: &[u8],
    rq: Association,
    inspector: Box<dyn Inspector>,
    (max_pdu_length, idle): (u32, std::time::Duration),
) -> Report
where
    C: AsyncRead + AsyncWrite + Send,
    U: AsyncRead + AsyncWrite + Send + Unpin,
{
    let session = Session::new(rq, max_pdu_length, inspector);
    if let Err(e) = upstream.write_all(rq_bytes).await {
        return Report {
            ending: relay::Ending::Failed(e.to_string()),
            bytes_from_requestor: 0,
            bytes_from_acceptor: 0,
            session,
        };
    }
    relay::relay(client, upstream, session, idle).await
}

pub fn log_report(report: &Report, started: Instant) {
    let accepted = report.session.ac.is_some();
    tracing::info!(
        accepted,
        ending = ?report.ending,
        bytes.from_requestor = report.bytes_from_requestor,
        bytes.from_acceptor = report.bytes_from_acceptor,
        duration_ms = started.elapsed().as_millis() as u64,
        "association ended"
    );
}

/// One `dicom.association` record for an association pacsgate refused.
pub fn audit_rejection(
    audit: &Audit,
    parties: &Parties,
    refusal: &AssociationRefusal,
    started: Instant,
) {
    let rj = refusal.rejection();
    count_association(parties, "rejected", refusal.code());
    if refusal.is_limit() {
        METRICS
            .rate_limited
            .inc((listener_label(parties), refusal.code()));
    }
    if matches!(refusal, AssociationRefusal::Unreachable(_)) {
        METRICS
            .upstream_errors
            .inc((listener_label(parties), "connect"));
    }
    record::association(
        audit,
        &AssociationRecord {
            parties,
            outcome: "rejected",
            reason: Some(refusal.code().to_string()),
            rejection: Some([rj.result, rj.source, rj.reason]),
            activity: &Activity::default(),
            bytes_from_requestor: 0,
            bytes_from_acceptor: 0,
            duration_ms: started.elapsed().as_millis() as u64,
        },
    );
}

/// One `dicom.association` record for a relayed association.
pub fn audit_report(
    audit: &Audit,
    parties: &Parties,
    activity: &Mutex<Activity>,
    report: &Report,
    started: Instant,
) {
    let (outcome, reason) = match (&report.ending, report.session.ac.is_some()) {
        (relay::Ending::Aborted(a), _) => ("aborted", Some(a.why.clone())),
        (relay::Ending::IdleTimeout, _) => ("aborted", Some("idle timeout".to_string())),
        (relay::Ending::Failed(e), _) => ("failed", Some(e.clone())),
        (relay::Ending::Closed, true) => ("accepted", None),
        (relay::Ending::Closed, false) => ("not_accepted_by_pacs", None),
    };
    let listener = listener_label(parties);
    count_association(parties, outcome, "");
    METRICS
        .bytes
        .add((listener, "in"), report.bytes_from_requestor);
    METRICS
        .bytes
        .add((listener, "out"), report.bytes_from_acceptor);
    let activity = activity
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    record::association(
        audit,
        &AssociationRecord {
            parties,
            outcome,
            reason,
            rejection: None,
            activity: &activity,
            bytes_from_requestor: report.bytes_from_requestor,
            bytes_from_acceptor: report.bytes_from_acceptor,
            duration_ms: started.elapsed().as_millis() as u64,
        },
    );
}

/// `dicom` for the TLS listener, `outbound` for the tunnels (their names are not static).
fn listener_label(parties: &Parties) -> &'static str {
    if parties.listener == DICOM {
        DICOM
    } else {
        OUTBOUND
    }
}

fn count_association(parties: &Parties, result: &'static str, reason: &'static str) {
    METRICS
        .associations
        .inc((listener_label(parties), result, reason));
}
