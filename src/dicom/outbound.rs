//! Outbound tunnels (stunnel's client mode): plain DICOM from the local PACS on `listen`,
//! DICOM TLS to `remote`, the remote's certificate verified against `ca` and `server_name`,
//! our client certificate presented. The association is read and relayed exactly like an
//! inbound one ([`flow::run`], same phases and ARTIM), so the same framing checks apply;
//! the called AE must be in `remote_aets` (when set), commands are counted, and the same
//! audit records are written.

use std::net::SocketAddr;
use std::sync::Arc;

use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::access::{aet_eq, check_titles, AssociationRefusal, Grant};
use super::association::Association;
use super::flow::{self, Admitted, Connected, Ends, Opened, Phases};
use crate::audit::Audit;
use crate::config::OutboundConfig;
use crate::server::{self, Shutdown};
use crate::tls::{self, PeerIdentity};

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
        (MAX_TUNNEL_ASSOCIATIONS, None, None),
        shutdown,
        tracker,
        move |tcp, peer, _admission| {
            let span = tracing::info_span!(
                "assoc",
                listener = %ctx.config.name,
                peer = %peer.addr,
                remote = %ctx.config.remote,
                calling = tracing::field::Empty,
                called = tracing::field::Empty
            );
            let ends = Outbound {
                ctx: ctx.clone(),
                peer: peer.addr,
            };
            flow::run(ends, tcp).instrument(span)
        },
    )
    .await;
}

/// One connection from the local PACS: plain in, TLS out to the remote peer.
struct Outbound {
    ctx: Arc<OutboundContext>,
    peer: SocketAddr,
}

impl Ends for Outbound {
    type Requestor = TcpStream;
    type Acceptor = TlsStream<TcpStream>;

    fn listener(&self) -> &str {
        &self.ctx.config.name
    }

    fn peer(&self) -> SocketAddr {
        self.peer
    }

    fn phases(&self) -> Phases {
        let cfg = &self.ctx.config;
        Phases {
            handshake: cfg.handshake_timeout,
            artim: cfg.artim_timeout,
            connect: cfg.connect_timeout,
            idle: cfg.idle_timeout,
            max_pdu_length: cfg.max_pdu_length,
        }
    }

    fn audit(&self) -> &Arc<Audit> {
        &self.ctx.audit
    }

    async fn open(&self, tcp: TcpStream) -> Option<Opened<TcpStream>> {
        Some(Opened {
            stream: tcp,
            identity: None,
        })
    }

    /// Outbound associations carry whatever the local PACS asks for (counted, not
    /// filtered); only the called AE is checked against `remote_aets`.
    async fn admit(
        &self,
        rq: &Association,
        _identity: Option<&PeerIdentity>,
    ) -> Result<Admitted, AssociationRefusal> {
        let cfg = &self.ctx.config;
        check_titles(&rq.calling_ae, &rq.called_ae)?;
        let known = cfg.remote_aets.is_empty()
            || cfg
                .remote_aets
                .iter()
                .any(|a| aet_eq(a, &rq.called_ae, false));
        if !known {
            return Err(AssociationRefusal::CalledAeUnknown(rq.called_ae.clone()));
        }
        Ok(Admitted {
            grant: Grant::everything(),
            guards: Vec::new(),
        })
    }

    async fn connect(&self) -> Result<Connected<Self::Acceptor>, AssociationRefusal> {
        match connect_remote(&self.ctx, self.phases()).await {
            Ok(stream) => {
                let identity = tls::peer_identity(stream.get_ref().1);
                Ok(Connected { stream, identity })
            }
            Err(e) => {
                tracing::warn!(error = %e, "remote DICOM TLS peer unreachable; association rejected (transient)");
                Err(AssociationRefusal::Unreachable("remote_unreachable"))
            }
        }
    }
}

/// TCP under the tunnel's `connect_timeout`, then the TLS handshake under the same
/// `dicom.handshake_timeout` as the inbound listener's.
async fn connect_remote(
    ctx: &OutboundContext,
    phases: Phases,
) -> Result<TlsStream<TcpStream>, Box<dyn std::error::Error + Send + Sync>> {
    let tcp = flow::connect_tcp(&ctx.config.remote, phases.connect).await?;
    let connector = TlsConnector::from(ctx.tls.clone());
    let handshake = connector.connect(ctx.server_name.clone(), tcp);
    let stream = tokio::time::timeout(phases.handshake, handshake)
        .await
        .map_err(|_| "TLS handshake timed out")??;
    Ok(stream)
}
