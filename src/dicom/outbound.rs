//! Outbound tunnels (stunnel's client mode): plain DICOM from the local PACS on `listen`,
//! DICOM TLS to `remote`, the remote's certificate verified against `ca` and `server_name`,
//! our client certificate presented. The association is read and relayed exactly like an
//! inbound one, so the same framing checks (and later policy) apply.

use std::sync::Arc;
use std::time::Instant;

use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::inbound::{
    connect_upstream, forward_and_relay, log_report, read_association_rq, reject,
};
use super::pdu::Rejection;
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
        MAX_TUNNEL_ASSOCIATIONS,
        shutdown,
        tracker,
        move |tcp, peer| {
            let span = tracing::info_span!(
                "assoc",
                listener = %ctx.config.name,
                %peer,
                remote = %ctx.config.remote,
                calling = tracing::field::Empty,
                called = tracing::field::Empty
            );
            handle(tcp, ctx.clone()).instrument(span)
        },
    )
    .await;
}

async fn handle(mut local: TcpStream, ctx: Arc<OutboundContext>) {
    let started = Instant::now();
    let cfg = &ctx.config;
    let Some((rq_bytes, rq)) = read_association_rq(&mut local, cfg.connect_timeout).await else {
        return;
    };
    let remote = match connect_remote(&ctx).await {
        Ok(stream) => stream,
        Err(e) => {
            tracing::warn!(error = %e, "remote DICOM TLS peer unreachable; association rejected (transient)");
            return reject(&mut local, Rejection::TEMPORARY_CONGESTION).await;
        }
    };
    if let Some(id) = tls::peer_identity(remote.get_ref().1) {
        tracing::debug!(remote.subject = %id.subject, remote.fp = %id.fingerprint, "remote verified");
    }
    let report = forward_and_relay(
        local,
        remote,
        &rq_bytes,
        rq,
        cfg.max_pdu_length,
        cfg.idle_timeout,
    )
    .await;
    log_report(&report, started);
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
