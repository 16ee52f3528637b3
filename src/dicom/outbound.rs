//! Outbound tunnels (stunnel's client mode): plain DICOM from the local PACS on `listen`,
//! DICOM TLS to `remote`, the remote's certificate verified against `ca` and `server_name`,
//! our client certificate presented. The association is read and relayed exactly like an
//! inbound one, so the same framing checks apply; the called AE must be in `remote_aets`
//! (when set), commands are counted, and the same audit records are written.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::access::{aet_eq, check_titles, AssociationRefusal, Grant};
use super::enforce::Enforcer;
use super::inbound::{
    audit_rejection, audit_report, connect_upstream, forward_and_relay, log_report,
    read_association_rq, reject,
};
use super::record::{Activity, Parties};
use crate::audit::Audit;
use crate::config::OutboundConfig;
use crate::server::{self, Shutdown};
use crate::tls;

pub struct OutboundContext {
    pub config: OutboundConfig,
    pub tls: Arc<ClientConfig>,
    pub server_name: ServerName<'static>,
    pub audit: Arc<Audit>,
}

impl OutboundContext {
    pub fn new(
        config: OutboundConfig,
        tls: Arc<ClientConfig>,
        audit: Arc<Audit>,
    ) -> Option<Arc<Self>> {
        let server_name = ServerName::try_from(config.server_name.clone()).ok()?;
        Some(Arc::new(Self {
            config,
            tls,
            server_name,
            audit,
        }))
    }
}

/// Outbound tunnels serve one local PACS; a modest fixed bound keeps a runaway SCU in check.
const MAX_TUNNEL_ASSOCIATIONS: usize = 64;

pub async fn serve(
    listener: TcpListener,
    ctx: Arc<OutboundContext>,
    shutdown: Shutdown,
    tracker: TaskTracker,
) {
    server::accept_loop(
        "outbound",
        listener,
        (MAX_TUNNEL_ASSOCIATIONS, None),
        shutdown,
        tracker,
        move |tcp, peer, _admission| {
            let span = tracing::info_span!(
                "assoc",
                listener = %ctx.config.name,
                %peer,
                remote = %ctx.config.remote,
                calling = tracing::field::Empty,
                called = tracing::field::Empty
            );
            handle(tcp, peer.ip(), ctx.clone()).instrument(span)
        },
    )
    .await;
}

async fn handle(mut local: TcpStream, peer_ip: std::net::IpAddr, ctx: Arc<OutboundContext>) {
    let started = Instant::now();
    let cfg = &ctx.config;
    let Some((rq_bytes, rq)) = read_association_rq(&mut local, cfg.connect_timeout).await else {
        return;
    };
    let mut parties = Parties::new(&cfg.name, peer_ip, None);
    parties.calling_ae = rq.calling_ae.clone();
    parties.called_ae = rq.called_ae.clone();
    let titles = check_titles(&rq.calling_ae, &rq.called_ae).and_then(|()| {
        if !ctx.audit.admits() {
            return Err(AssociationRefusal::AuditUnavailable);
        }
        let known = cfg.remote_aets.is_empty()
            || cfg
                .remote_aets
                .iter()
                .any(|a| aet_eq(a, &rq.called_ae, false));
        if known {
            Ok(())
        } else {
            Err(AssociationRefusal::CalledAeUnknown(rq.called_ae.clone()))
        }
    });
    if let Err(refusal) = titles {
        tracing::info!(reason = %refusal, "association rejected");
        audit_rejection(&ctx.audit, &parties, &refusal, started);
        return reject(&mut local, refusal.rejection(), !refusal.is_limit()).await;
    }
    let remote = match connect_remote(&ctx).await {
        Ok(stream) => stream,
        Err(e) => {
            tracing::warn!(error = %e, "remote DICOM TLS peer unreachable; association rejected (transient)");
            let refusal = AssociationRefusal::Unreachable("remote_unreachable");
            audit_rejection(&ctx.audit, &parties, &refusal, started);
            return reject(&mut local, refusal.rejection(), !refusal.is_limit()).await;
        }
    };
    if let Some(id) = tls::peer_identity(remote.get_ref().1) {
        tracing::debug!(remote.subject = %id.subject, remote.fp = %id.fingerprint, "remote verified");
        parties.tls_fingerprint = Some(id.fingerprint.to_string());
        parties.tls_cn = id.common_name.clone();
    }
    let parties = Arc::new(parties);
    let activity = Arc::new(Mutex::new(Activity::default()));
    let counter = Enforcer::new(
        Grant::everything(),
        parties.clone(),
        ctx.audit.clone(),
        activity.clone(),
    );
    let report = forward_and_relay(
        local,
        remote,
        &rq_bytes,
        rq,
        Box::new(counter),
        (cfg.max_pdu_length, cfg.idle_timeout),
    )
    .await;
    log_report(&report, started);
    audit_report(&ctx.audit, &parties, &activity, &report, started);
}

async fn connect_remote(
    ctx: &OutboundContext,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, Box<dyn std::error::Error + Send + Sync>> {
    let cfg = &ctx.config;
    let tcp = connect_upstream(&cfg.remote, cfg.connect_timeout).await?;
    let connector = TlsConnector::from(ctx.tls.clone());
    let handshake = connector.connect(ctx.server_name.clone(), tcp);
    let stream = tokio::time::timeout(cfg.connect_timeout, handshake)
        .await
        .map_err(|_| "TLS handshake timed out")??;
    Ok(stream)
}
